"""This server against the bridge users run today, in one run, alternating: `ovos-google-stt serve`
at its defaults, the seed Flask bridge (--peer, optional), the OVOS launcher `ovos-stt-server`
0.28 serving this plugin from its own venv (--launcher, optional: the venv is the compat tests'
one, built from PyPI on first use), and the same clients posting straight to the fake Google (no
bridge). With --floors, also bench/floors.py's two forwarders that check nothing, a yardstick for
a Python server in the middle: their Google call on a worker thread or on the event loop. 32 clients,
then 1, posting 4.5 s clips; the fake answers in 150 ms. Each round, each server goes first in
turn (balanced when --rounds is a multiple of the servers measured; the bare clients go first).

    python bench/peers.py [--peer /work/shared/peers/seed_bridge.py] [--launcher] [--floors] [--rounds 2] [--out bench/results]

Reports medians over the rounds of: requests/s at 32 clients, server CPU per request (utime +
stime of the server process over the measured requests), added latency at 1 client (p50 minus
the no-bridge p50 of the same round), and the ratios the issue sets as targets.
"""
from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE)]

from capacity import Served, _cpu_seconds, free_port  # noqa: E402
from children import KEY  # noqa: E402
from load import Child, drive  # noqa: E402
from speechlike import RATE, speech_like  # noqa: E402
from stats import commit, machine  # noqa: E402

from ovos_stt_plugin_google_apikey.settings import PLUGIN_ID  # noqa: E402

CLIP = 4.5
DELAY = 0.15


def _threads_cpu(pid: int) -> Dict[str, float]:
    """CPU seconds by thread kind: the event loop (the main thread) and the rest (the Google
    call on worker threads, decoding hops)."""
    out = {"loop": 0.0, "workers": 0.0}
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError):
            with open(f"/proc/{pid}/task/{tid}/stat", encoding="ascii") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            used = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            out["loop" if int(tid) == pid else "workers"] += used
    return out


class Peer:
    """The seed bridge (Flask's threaded development server), as its source says to run it; or,
    with ``floor``, one of bench/floors.py's forwarders."""

    def __init__(self, script: str, endpoint: str, floor: Optional[str] = None) -> None:
        import requests
        self.port = free_port()
        if floor:
            argv = [sys.executable, str(HERE / "floors.py"), floor, str(self.port)]
            env = {**os.environ, "FLOOR_ENDPOINT": endpoint, "FLOOR_KEY": KEY}
        else:
            argv = [sys.executable, script]
            env = {**os.environ, "STT_PW": KEY, "PORT": str(self.port), "STT_LANG": "en-US",
                   "GOOGLE_URL": endpoint + "/v1/speech:recognize"}
        self.proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the peer did not start (exit {self.proc.poll()})")
            with contextlib.suppress(requests.RequestException):
                requests.get(self.url + "/", timeout=1)
                break
            time.sleep(0.1)

    def cpu_seconds(self) -> float:
        return _cpu_seconds(self.proc.pid)

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Launcher:
    """ovos-stt-http-server's `ovos-stt-server --engine` this plugin, in the venv tests/test_compat.py
    uses (tests/venvs.py builds and caches it), configured through mycroft.conf as OVOS users do."""

    def __init__(self, endpoint: str) -> None:
        sys.path.insert(0, str(HERE.parent / "tests"))
        import compat_envs
        import venvs
        self._venvs = venvs
        venv = venvs.ensure_venv("server-0.28", compat_envs.SERVER_028)
        venvs.pip_install(venv, "--no-deps", "--force-reinstall", str(HERE.parent))
        xdg = Path(tempfile.mkdtemp(prefix="google-stt-bench-launcher-")) / "xdg"
        venvs.write_mycroft_conf(xdg, {"lang": "en-US", "stt": {
            "module": PLUGIN_ID, PLUGIN_ID: {"key": KEY, "endpoint": endpoint, "lang": "en-US"}}})
        self.proc = venvs.start_launcher(venv, PLUGIN_ID, None, xdg)
        self.url = self.proc.url

    def cpu_seconds(self) -> float:
        return _cpu_seconds(self.proc.pid)

    def close(self) -> None:
        self._venvs.stop_process(self.proc)


KINDS = {"server": "this server", "seed": "seed bridge", "launcher": "OVOS launcher 0.28",
         "floor-threads": "floor: Google call on a thread", "floor-asyncio": "floor: Google call on the loop"}


@contextlib.contextmanager
def started(kind: str, endpoint: str, peer: Optional[str]) -> Iterator[Any]:
    if kind == "server":
        bridge: Any = Served(endpoint, 1)
    elif kind == "launcher":
        bridge = Launcher(endpoint)
    elif kind.startswith("floor-"):
        bridge = Peer("", endpoint, floor=kind.split("-", 1)[1])
    else:
        bridge = Peer(peer or "", endpoint)
    try:
        yield bridge
    finally:
        bridge.close()


def measure(url: str, body: bytes, headers: Dict[str, str], cpu: Any, clients: int,
            total: int) -> Dict[str, Any]:
    drive(url, body, headers, clients, clients)          # imports, and every pool at this concurrency (ours to Google too)
    pid = getattr(getattr(cpu, "__self__", None), "proc", None)
    threads_before = _threads_cpu(pid.pid) if pid else None
    before = cpu() if cpu else 0.0
    codes: Dict[str, int] = {}
    latencies, failed, wall = drive(url, body, headers, clients, total, codes)
    used = (cpu() - before) if cpu else None
    split = None
    if threads_before is not None and pid is not None:
        after, done = _threads_cpu(pid.pid), max(1, len(latencies) + failed)
        split = {k: (after[k] - threads_before[k]) * 1000 / done for k in after}
    return {"cpu_ms_per_request_by_thread": split,
            "rps": len(latencies) / wall, "p50_ms": statistics.median(latencies) * 1000,
            "failures": failed, "codes": codes,
            "cpu_ms_per_request": used * 1000 / max(1, len(latencies) + failed) if used is not None else None}


def run(peer: Optional[str], rounds: int, many: int, total: int, single: int,
        launcher: bool = False, floors: bool = False) -> Dict[str, Any]:
    from ovos_stt_plugin_google_apikey import audio as audio_mod
    pcm = audio_mod.PCM(speech_like(CLIP, seed=11), RATE, 2)
    wav = audio_mod.to_wav(pcm)
    google = json.dumps({"config": {"encoding": "LINEAR16", "sampleRateHertz": RATE, "languageCode": "en-US"},
                         "audio": {"content": base64.b64encode(pcm.data).decode("ascii")}}).encode()
    google_headers = {"X-Goog-Api-Key": KEY, "Content-Type": "application/json; charset=utf-8"}
    at_start, began = machine(), time.time()
    fake = Child("fake", "--delay", str(DELAY))
    endpoint = fake.first_line[0]
    kinds = (["server"] + (["seed"] if peer else []) + (["launcher"] if launcher else [])
             + (["floor-threads", "floor-asyncio"] if floors else []))
    samples: Dict[str, List[Dict[str, Any]]] = {k: [] for k in kinds + ["bare"]}
    try:
        for n in range(rounds):
            print(f"[peers] round {n + 1} of {rounds}", file=sys.stderr, flush=True)
            bare = {"many": measure(endpoint + "/v1/speech:recognize", google, google_headers, None, many, total),
                    "one": measure(endpoint + "/v1/speech:recognize", google, google_headers, None, 1, single)}
            samples["bare"].append(bare)
            for kind in kinds[n % len(kinds):] + kinds[:n % len(kinds)]:     # each goes first in turn
                with started(kind, endpoint, peer) as bridge:
                    url = bridge.url + "/stt?lang=en-US"
                    row = {"many": measure(url, wav, {"Content-Type": "audio/wav"}, bridge.cpu_seconds, many, total),
                           "one": measure(url, wav, {"Content-Type": "audio/wav"}, bridge.cpu_seconds, 1, single)}
                row["added_ms"] = row["one"]["p50_ms"] - bare["one"]["p50_ms"]
                samples[kind].append(row)
    finally:
        fake.close()
    return {"machine": at_start, "commit": commit(), "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(began)),
            "delay_s": DELAY, "clip_s": CLIP, "clients": many, "requests": total,
            "single_requests": single, "rounds": rounds, "samples": samples, "summary": summary(samples)}


def _median(rows: List[Dict[str, Any]], *path: str) -> float:
    values = []
    for row in rows:
        for key in path:
            row = row[key]
        values.append(row)
    return statistics.median(values)


def summary(samples: Dict[str, List[Dict[str, Any]]]) -> Dict[str, Any]:
    out: Dict[str, Any] = {"bare_rps": _median(samples["bare"], "many", "rps")}
    for kind in KINDS:
        if samples.get(kind):
            out[kind] = {"rps": _median(samples[kind], "many", "rps"),
                         "cpu_ms_per_request": _median(samples[kind], "many", "cpu_ms_per_request"),
                         "loop_cpu_ms_per_request": _median(samples[kind], "many",
                                                            "cpu_ms_per_request_by_thread", "loop"),
                         "added_ms_1_client": _median(samples[kind], "added_ms"),
                         "failures": sum(r["many"]["failures"] + r["one"]["failures"] for r in samples[kind])}
    ours = out["server"]
    out["throughput_vs_bare"] = ours["rps"] / out["bare_rps"]
    if "seed" in out:
        out["cpu_vs_seed"] = ours["cpu_ms_per_request"] / out["seed"]["cpu_ms_per_request"]
        out["added_latency_vs_seed"] = ours["added_ms_1_client"] / out["seed"]["added_ms_1_client"]
    for floor in ("floor-threads", "floor-asyncio"):
        if floor in out:
            out[f"{floor}_throughput_vs_bare"] = out[floor]["rps"] / out["bare_rps"]
    if "launcher" in out:
        out["cpu_vs_launcher"] = ours["cpu_ms_per_request"] / out["launcher"]["cpu_ms_per_request"]
    return out


def markdown(result: Dict[str, Any]) -> str:
    s = result["summary"]
    kinds = [k for k in KINDS if k in s]
    lines = [f"{result['clients']} clients, {result['clip_s']:g} s clips, fake answering in "
             f"{result['delay_s'] * 1000:.0f} ms; medians of {result['rounds']} alternating rounds; "
             f"load average at start {result['machine'].get('loadavg_at_start')}; "
             f"{result.get('commit', 'commit not recorded')}, {result.get('started', '')}", "",
             "| | " + " | ".join(KINDS[k] for k in kinds) + " | clients straight to the fake |",
             "|---|" + "---|" * (len(kinds) + 1)]

    def row(label: str, key: str, fmt: str, bare: str) -> str:
        return f"| {label} | " + " | ".join(fmt.format(s[k][key]) for k in kinds) + f" | {bare} |"

    lines += [row(f"requests/s at {result['clients']} clients", "rps", "{:.1f}", f"{s['bare_rps']:.1f}"),
              row("server CPU per request", "cpu_ms_per_request", "{:.2f} ms", "—"),
              row("of which the main thread (our event loop; the seed: its accept loop)",
                  "loop_cpu_ms_per_request", "{:.2f} ms", "—"),
              row("added latency, 1 client (p50)", "added_ms_1_client", "{:.2f} ms", "0"),
              row("failed requests", "failures", "{}", "—")]
    lines += ["", f"- throughput vs no bridge: {s['throughput_vs_bare']:.3f} (target ≥ 0.97)"]
    if "cpu_vs_seed" in s:
        lines += [f"- CPU per request vs the seed: {s['cpu_vs_seed']:.2f} (target ≤ 0.5)",
                  f"- added latency vs the seed: {s['added_latency_vs_seed']:.2f} (target ≤ 0.5)"]
    if "cpu_vs_launcher" in s:
        lines += [f"- CPU per request vs the OVOS launcher: {s['cpu_vs_launcher']:.2f}"]
    for floor in ("floor-threads", "floor-asyncio"):
        if f"{floor}_throughput_vs_bare" in s:
            lines += [f"- throughput vs no bridge, {KINDS[floor]}: {s[f'{floor}_throughput_vs_bare']:.3f}"]
    return "\n".join(lines) + "\n"


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--peer", help="the seed bridge's script (needs flask); left out when not given")
    parser.add_argument("--launcher", action="store_true",
                        help="also the OVOS launcher 0.28 serving this plugin (its venv from PyPI on first use)")
    parser.add_argument("--floors", action="store_true",
                        help="also bench/floors.py's two forwarders that check nothing (yardsticks)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--requests", type=int, default=320, help="requests per round at --clients")
    parser.add_argument("--single", type=int, default=30, help="requests per round at 1 client")
    parser.add_argument("--out", default=str(HERE / "results"))
    args = parser.parse_args(argv)
    result = run(args.peer, args.rounds, args.clients, args.requests, args.single, args.launcher, args.floors)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "peers.json").write_text(json.dumps(result, indent=1))
    text = markdown(result)
    (out / "peers.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
