"""The server's capacity curve: `ovos-google-stt serve` at its defaults, started as README starts
it, against the same clients posting straight to the fake Google, from 1 to 512 at once.

    python bench/capacity.py [--quick | --tiny] [--delay 1.0] [--processes N] [--out bench/results]

Each level gets a fresh server process (so its peak RSS is that level's), one warm-up request
per client (not measured), then ``rounds`` requests per client. Writes capacity[-<mode>].json/.md
(and .png with matplotlib) into --out and prints the markdown.
"""
from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE)]

from children import KEY, ROOT, isolate  # noqa: E402

isolate()

from load import Child, drive  # noqa: E402
from speechlike import RATE, speech_like  # noqa: E402
from stats import machine, summarize  # noqa: E402

LEVELS = {"full": (1, 8, 32, 64, 128, 256, 512), "quick": (1, 32, 256), "tiny": (8,)}
ROUNDS = {"full": 3, "quick": 2, "tiny": 2}
MIN_REQUESTS = {"full": 10, "quick": 5, "tiny": 4}
CLIP_SECONDS = 5.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _pids(root: int) -> List[int]:
    """``root`` and every process under it (--processes starts workers and a resource tracker)."""
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{task}/children", encoding="ascii") as f:
                    todo += [int(p) for p in f.read().split()]
    return found


def _status(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")    # utime + stime


class Served:
    """`python -m ovos_stt_plugin_google_apikey.cli serve` with only the key (in the environment)
    and the endpoint given: every limit at its default."""

    def __init__(self, endpoint: str, processes: int, log: Optional[Any] = None) -> None:
        self.port = free_port()
        env = {**os.environ, "GOOGLE_STT_API_KEY": KEY, "PYTHONPATH": str(ROOT)}
        args = ["--processes", str(processes)] if processes > 1 else []
        self.proc = subprocess.Popen([sys.executable, "-m", "ovos_stt_plugin_google_apikey.cli", "serve",
                                      "--port", str(self.port), "--endpoint", endpoint, *args],
                                     env=env, stdout=subprocess.DEVNULL, stderr=log or subprocess.DEVNULL)
        self.url = f"http://127.0.0.1:{self.port}"
        import requests
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start (exit {self.proc.poll()})")
            with contextlib.suppress(requests.RequestException):
                if requests.get(self.url + "/status", timeout=1).status_code == 200:
                    break
            time.sleep(0.1)
        self.status = requests.get(self.url + "/status", timeout=5).json()

    def memory_kib(self, field: str) -> int:
        """Summed over the server's processes (with --processes: the supervisor and its workers)."""
        return sum(_status(pid, field) for pid in _pids(self.proc.pid))

    def cpu_seconds(self) -> float:
        return sum(_cpu_seconds(pid) for pid in _pids(self.proc.pid))

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@contextlib.contextmanager
def served(endpoint: str, processes: int) -> Iterator[Served]:
    server = Served(endpoint, processes)
    try:
        yield server
    finally:
        server.close()


def _latency(latencies: List[float], delay: float) -> Dict[str, float]:
    if not latencies:
        return {"p50": float("nan"), "p99": float("nan"), "n": 0}
    added = summarize([x - delay for x in latencies])
    return {"p50": added["p50"] * 1000, "p99": added["p99"] * 1000, "n": added["n"]}


def level(endpoint: str, clients: int, total: int, delay: float, processes: int,
          clip: float) -> Dict[str, Any]:
    from ovos_stt_plugin_google_apikey import audio as audio_mod
    pcm = audio_mod.PCM(speech_like(clip, seed=11), RATE, 2)
    wav = audio_mod.to_wav(pcm)
    google_body = json.dumps({"config": {"encoding": "LINEAR16", "sampleRateHertz": RATE,
                                         "languageCode": "en-US"},
                              "audio": {"content": base64.b64encode(pcm.data).decode("ascii")}}).encode()
    google_headers = {"X-Goog-Api-Key": KEY, "Content-Type": "application/json; charset=utf-8"}
    with served(endpoint, processes) as server:
        drive(server.url + "/stt?lang=en-US", wav, {"Content-Type": "audio/wav"}, 1, 1)   # imports, pool
        idle_kib, cpu_before = server.memory_kib("VmRSS"), server.cpu_seconds()
        codes: Dict[str, int] = {}
        latencies, failed, wall = drive(server.url + "/stt?lang=en-US", wav, {"Content-Type": "audio/wav"},
                                        clients, total, codes)
        cpu = server.cpu_seconds() - cpu_before
        peak_kib = server.memory_kib("VmHWM")
        limits = {k: server.status.get(k) for k in ("capacity",)}
    base_latencies, base_failed, base_wall = drive(endpoint + "/v1/speech:recognize", google_body,
                                                   google_headers, clients, total)
    rps, base_rps = len(latencies) / wall, len(base_latencies) / base_wall
    in_flight = min(clients, limits["capacity"] or clients)
    return {"clients": clients, "requests": total, "failures": failed, "failure_codes": codes, "rps": rps,
            "baseline_rps": base_rps, "rps_vs_baseline": rps / base_rps if base_rps else float("nan"),
            "added_ms": _latency(latencies, delay), "baseline_added_ms": _latency(base_latencies, delay),
            "baseline_failures": base_failed, "wall_s": wall,
            "idle_rss_mib": idle_kib / 1024, "peak_rss_mib": peak_kib / 1024,
            "rss_per_request_in_flight_kib": (peak_kib - idle_kib) / in_flight,
            "server_cpu_ms_per_request": cpu * 1000 / max(1, len(latencies) + failed),
            "server_capacity": limits["capacity"]}


def silent_uploads(endpoint: str, delay: float, processes: int, clip: float, silent: int = 64,
                   clients: int = 16) -> List[Dict[str, Any]]:
    """Normal requests (``clients`` at once, two each) with no, then ``silent``, uploads open
    that announced a body, sent part of it and went quiet. Done within the server's default
    --body-idle (5 s), after which the silent ones get 408."""
    from ovos_stt_plugin_google_apikey import audio as audio_mod
    wav = audio_mod.to_wav(audio_mod.PCM(speech_like(clip, seed=11), RATE, 2))
    rows = []
    with served(endpoint, processes) as server:
        url = server.url + "/stt?lang=en-US"
        for count in (0, silent):
            conns = []
            for _ in range(count):
                conn = socket.create_connection(("127.0.0.1", server.port), timeout=30)
                conn.sendall(b"POST /stt HTTP/1.1\r\nHost: bench\r\nContent-Length: %d\r\n\r\n" % len(wav)
                             + wav[:len(wav) // 10])
                conns.append(conn)
            try:
                latencies, failed, wall = drive(url, wav, {"Content-Type": "audio/wav"}, clients, 2 * clients)
            finally:
                for conn in conns:
                    conn.close()
            rows.append({"silent_uploads": count, "clients": clients, "requests": 2 * clients,
                         "failures": failed, "added_ms": _latency(latencies, delay), "wall_s": wall})
    return rows


def run(mode: str, delay: float, processes: int, levels: Optional[List[int]] = None,
        clip: float = CLIP_SECONDS) -> Dict[str, Any]:
    at_start = machine()                  # the load average before this run adds its own
    fake = Child("fake", "--delay", str(delay))
    rows = []
    try:
        for clients in LEVELS[mode] if levels is None else levels:
            total = max(MIN_REQUESTS[mode], ROUNDS[mode] * clients)
            print(f"[capacity] {clients} clients, {total} requests ...", file=sys.stderr, flush=True)
            rows.append(level(fake.first_line[0], clients, total, delay, processes, clip))
        print("[capacity] silent uploads ...", file=sys.stderr, flush=True)
        silent = silent_uploads(fake.first_line[0], delay, processes, clip)
    finally:
        fake.close()
    return {"mode": mode, "machine": at_start, "delay_s": delay, "processes": processes,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "server": "python -m ovos_stt_plugin_google_apikey.cli serve --port P --endpoint FAKE"
                      + (f" --processes {processes}" if processes > 1 else "")
                      + " (every limit at its default; the key in GOOGLE_STT_API_KEY)",
            "request": f"POST /stt?lang=en-US with a {clip:g} s 16 kHz WAV",
            "clients": "threads with one requests.Session each, in the benchmark process",
            "baseline": "the same clients POSTing the equivalent Google JSON straight to the fake",
            "rows": rows, "silent": silent}


def markdown(result: Dict[str, Any]) -> str:
    m = result["machine"]
    lines = [f"# Server capacity ({result['mode']}, fake Google delay {result['delay_s']:g} s)", "",
             f"Machine: {m['cpu_model']}, {m['cores']} cores, Python {m['python']}, load average at start "
             f"{m['loadavg_at_start']}. Server: `{result['server']}`. Request: {result['request']}. "
             f"Clients: {result['clients']}. Baseline: {result['baseline']}.", "",
             "| clients | req/s | bare req/s | ratio | added p50 / p99 ms | bare added p50 / p99 ms | "
             "failures | peak RSS MiB | RSS per request in flight KiB | server CPU ms/request |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        a, b = r["added_ms"], r["baseline_added_ms"]
        lines.append(f"| {r['clients']} | {r['rps']:.1f} | {r['baseline_rps']:.1f} | "
                     f"{r['rps_vs_baseline']:.3f} | {a['p50']:.1f} / {a['p99']:.1f} | "
                     f"{b['p50']:.1f} / {b['p99']:.1f} | {r['failures']} of {r['requests']}"
                     f"{_codes(r.get('failure_codes'))} | "
                     f"{r['peak_rss_mib']:.1f} | {r['rss_per_request_in_flight_kib']:.0f} | "
                     f"{r['server_cpu_ms_per_request']:.2f} |")
    lines += ["", "Normal requests while uploads that sent part of their body and went quiet stay open:", "",
              "| silent uploads open | clients | added p50 / p99 ms | failures |", "|---|---|---|---|"]
    for r in result["silent"]:
        a = r["added_ms"]
        lines.append(f"| {r['silent_uploads']} | {r['clients']} | {a['p50']:.1f} / {a['p99']:.1f} | "
                     f"{r['failures']} of {r['requests']} |")
    return "\n".join(lines) + "\n"


def _codes(codes: Optional[Dict[str, int]]) -> str:
    return f" ({', '.join(f'{n}x {c}' for c, n in sorted(codes.items()))})" if codes else ""


def plot(result: Dict[str, Any], path: Path, before: Optional[Dict[str, Any]] = None) -> Optional[str]:
    """Draw the PNG (with ``before``, an earlier result, in grey); the reason it was not drawn, or None."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        return f"matplotlib is not importable ({exc})"
    rows = result["rows"]
    if not rows:
        return "no levels were run"
    clients = [r["clients"] for r in rows]
    fig, (thr, lat, mem) = plt.subplots(1, 3, figsize=(15, 4.5))
    thr.plot(clients, [r["rps"] for r in rows], "o-", label="through the server")
    thr.plot(clients, [r["baseline_rps"] for r in rows], "k.--", label="straight to the fake")
    thr.set(xscale="log", yscale="log", xlabel="concurrent clients", ylabel="requests/s (200s only)",
            title="Throughput")
    lat.plot(clients, [max(0.1, r["added_ms"]["p50"]) for r in rows], "o-", label="server p50")
    lat.plot(clients, [max(0.1, r["added_ms"]["p99"]) for r in rows], "^:", label="server p99")
    lat.plot(clients, [max(0.1, r["baseline_added_ms"]["p50"]) for r in rows], "k.--", label="bare p50")
    lat.set(xscale="log", yscale="log", xlabel="concurrent clients",
            ylabel=f"ms over the fake's {result['delay_s']:g} s", title="Added latency")
    mem.plot(clients, [r["peak_rss_mib"] for r in rows], "o-", label="peak RSS (MiB)")
    failed = [100 * r["failures"] / r["requests"] for r in rows]
    mem.plot(clients, failed, "rx--", label="failed requests (%)")
    if before and before["rows"]:
        old = before["rows"]
        thr.plot([r["clients"] for r in old], [r["rps"] for r in old], "s-", color="grey",
                 label=f"before ({before.get('label', 'earlier run')})")
        mem.plot([r["clients"] for r in old], [100 * r["failures"] / r["requests"] for r in old], "x:",
                 color="grey", label="failed before (%)")
    mem.set(xscale="log", xlabel="concurrent clients", title="Server memory and failures")
    for ax in (thr, lat, mem):
        ax.set_xticks(clients, [str(c) for c in clients])
        ax.legend(fontsize=8)
    fig.suptitle(f"{result['server']}; {result['machine']['cpu_model']}, {result['machine']['cores']} cores",
                 fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return None


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_const", dest="mode", const="quick")
    size.add_argument("--tiny", action="store_const", dest="mode", const="tiny", help="the CI smoke run")
    parser.add_argument("--delay", type=float, default=1.0, help="the fake's answer time, seconds (default 1)")
    parser.add_argument("--processes", type=int, default=1, help="serve --processes (default 1)")
    parser.add_argument("--levels", type=int, nargs="*", help="client counts instead of the mode's")
    parser.add_argument("--clip", type=float, default=CLIP_SECONDS,
                        help=f"seconds of audio per request (default {CLIP_SECONDS:g})")
    parser.add_argument("--name", default="capacity", help="file name stem (default: capacity)")
    parser.add_argument("--out", default=str(HERE / "results"))
    parser.add_argument("--replot", metavar="JSON", help="redraw the plot of an earlier result; no run")
    parser.add_argument("--before", metavar="JSON", help="an earlier result to draw in grey")
    parser.add_argument("--before-label", default="earlier run", help="what --before was")
    args = parser.parse_args(argv)
    before = json.loads(Path(args.before).read_text(encoding="utf-8")) if args.before else None
    if before is not None:
        before["label"] = args.before_label
    if args.replot:
        result = json.loads(Path(args.replot).read_text(encoding="utf-8"))
        skipped = plot(result, Path(args.replot).with_suffix(".png"), before)
        print(skipped or f"drew {Path(args.replot).with_suffix('.png')}")
        return 0
    mode = args.mode or "full"
    result = run(mode, args.delay, args.processes, args.levels, args.clip)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = args.name if mode == "full" else f"{args.name}-{mode}"
    result["plot_skipped"] = plot(result, out / f"{stem}.png", before)
    (out / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    text = markdown(result)
    (out / f"{stem}.md").write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
