"""A flood of connections that never send a byte, against `ovos-google-stt serve` at its defaults:
while they are held, a fresh client posts a 4.5 s clip every second. With --reopen, every
connection the server closes is opened again at once (a connection flood at the rate the server
can close them: what an attacker with a few processes can keep up). Reports the fresh client's latency and status before and during the
flood, the connections the flood held and had closed, the server's CPU, and how many bytes it
logged besides the fresh client's request lines (asyncio used to log a traceback per failed
accept()).

    python bench/floods.py [--connections 21000] [--seconds 30] [--reopen] [--out bench/results]

The flood runs in --flooders processes (each under its own open-file limit), from source
addresses 127.0.0.2, 127.0.0.3, ... so that ephemeral ports do not run out.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import selectors
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE)]

from capacity import Served  # noqa: E402
from load import Child  # noqa: E402
from speechlike import RATE, speech_like  # noqa: E402
from stats import machine  # noqa: E402

CLIP = 4.5
DELAY = 0.15


def flood(host: str, port: int, source: str, count: int, seconds: float, reopen: bool) -> Dict[str, int]:
    """Hold ``count`` connections to host:port that send nothing, for ``seconds``; with ``reopen``
    each one the server closes (or refuses) is opened again at once. Runs in a flooder process."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, count + 64), hard))
    sel = selectors.DefaultSelector()
    stats = {"opened": 0, "closed_by_server": 0, "failed_to_open": 0, "held_at_end": 0}

    def open_one() -> None:
        sock = socket.socket()
        sock.setblocking(False)
        try:
            sock.bind((source, 0))
            sock.connect_ex((host, port))
        except OSError:
            sock.close()
            stats["failed_to_open"] += 1
            return
        sel.register(sock, selectors.EVENT_READ)
        stats["opened"] += 1

    for _ in range(count):
        open_one()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for key, _ in sel.select(timeout=0.5):
            sock = key.fileobj
            try:
                data = sock.recv(4096)             # type: ignore[union-attr]
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:                       # closed (or refused): open another
                sel.unregister(sock)
                sock.close()                       # type: ignore[union-attr]
                stats["closed_by_server"] += 1
                if reopen:
                    open_one()
    stats["held_at_end"] = len(sel.get_map())
    return stats


def probe(url: str, wav: bytes) -> Dict[str, Any]:
    """One fresh client (a new connection): POST the clip, the seconds until the answer."""
    import requests
    started = time.monotonic()
    try:
        with requests.Session() as session:
            reply = session.post(url, data=wav, headers={"Content-Type": "audio/wav"}, timeout=60)
        outcome = str(reply.status_code)
    except requests.RequestException as exc:
        outcome = type(exc).__name__
    return {"seconds": time.monotonic() - started, "outcome": outcome}


def probes(url: str, wav: bytes, seconds: float) -> List[Dict[str, Any]]:
    out, end = [], time.monotonic() + seconds
    while time.monotonic() < end:
        out.append(probe(url, wav))
        time.sleep(max(0.0, 1.0 - out[-1]["seconds"]))
    return out


def summary(rows: List[Dict[str, Any]]) -> Dict[str, Any]:
    times = [r["seconds"] for r in rows]
    outcomes: Dict[str, int] = {}
    for r in rows:
        outcomes[r["outcome"]] = outcomes.get(r["outcome"], 0) + 1
    return {"probes": len(rows), "p50_s": statistics.median(times), "max_s": max(times), "outcomes": outcomes}


def run(connections: int, seconds: float, flooders: int, reopen: bool = False) -> Dict[str, Any]:
    from ovos_stt_plugin_google_apikey import audio as audio_mod
    wav = audio_mod.to_wav(audio_mod.PCM(speech_like(CLIP, seed=11), RATE, 2))
    at_start = machine()
    fake = Child("fake", "--delay", str(DELAY))
    log = tempfile.NamedTemporaryFile(prefix="google-stt-floods-", suffix=".log", delete=False)
    server = Served(fake.first_line[0], 1, log=log)
    url = server.url + "/stt?lang=en-US"
    try:
        quiet = probes(url, wav, 5)
        logged_before, cpu_before = os.path.getsize(log.name), server.cpu_seconds()
        share = -(-connections // flooders)
        procs = [subprocess.Popen([sys.executable, __file__, "--flooder", f"127.0.0.{2 + i}", str(server.port),
                                   str(share), str(seconds), *(["reopen"] if reopen else [])],
                                  stdout=subprocess.PIPE, text=True)
                 for i in range(flooders)]
        time.sleep(1.0)                            # the flood starts opening its connections
        during = probes(url, wav, seconds - 3)
        held = [json.loads(p.communicate(timeout=seconds + 60)[0]) for p in procs]
        cpu = server.cpu_seconds() - cpu_before
        with open(log.name, "rb") as f:
            f.seek(logged_before)
            logged = f.read().decode("utf-8", "replace").splitlines()
        other = [line for line in logged if "POST /stt" not in line]     # not the probes' own lines
    finally:
        server.close()
        fake.close()
        os.unlink(log.name)
    totals = {k: sum(h[k] for h in held) for k in held[0]}
    return {"machine": at_start, "connections": connections, "seconds": seconds, "flooders": flooders,
            "reopen": reopen,
            "flood": totals,
            "before": summary(quiet), "during": summary(during),
            "server_cpu_share_during": cpu / seconds, "log_lines_during": len(logged), "other_log_lines_during": len(other),
            "other_log_lines_first": other[:5],
            "raw": {"before": quiet, "during": during}}


def markdown(r: Dict[str, Any]) -> str:
    b, d, f = r["before"], r["during"], r["flood"]
    return "\n".join([
        f"{r['connections']} idle connections held for {r['seconds']:g} s from {r['flooders']} processes "
        f"({'each one closed opened again' if r['reopen'] else 'none reopened'}); a fresh client posts a {CLIP:g} s clip every second; the fake "
        f"answers in {DELAY * 1000:.0f} ms; load average at start {r['machine'].get('loadavg_at_start')}", "",
        "| | before the flood | during the flood |", "|---|---|---|",
        f"| fresh client, p50 | {b['p50_s'] * 1000:.0f} ms | {d['p50_s'] * 1000:.0f} ms |",
        f"| fresh client, slowest | {b['max_s'] * 1000:.0f} ms | {d['max_s'] * 1000:.0f} ms |",
        f"| fresh client outcomes | {b['outcomes']} | {d['outcomes']} |", "",
        f"- flood: {f['opened']} connections opened, {f['closed_by_server']} closed by the server, "
        f"{f['held_at_end']} open at the end, {f['failed_to_open']} failed to open",
        f"- server CPU during the flood: {r['server_cpu_share_during'] * 100:.0f} % of a core",
        f"- lines the server logged during the flood: {r['log_lines_during']}, of which "
        f"{r['other_log_lines_during']} not the fresh client's own request lines", ""])


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--flooder"]:
        source, port, count, seconds = argv[1], int(argv[2]), int(argv[3]), float(argv[4])
        print(json.dumps(flood("127.0.0.1", port, source, count, seconds, argv[5:] == ["reopen"])))
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, default=21000)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--flooders", type=int, default=3)
    parser.add_argument("--reopen", action="store_true", help="open again every connection the server closes")
    parser.add_argument("--out", default=str(HERE / "results"))
    args = parser.parse_args(argv)
    result = run(args.connections, args.seconds, args.flooders, args.reopen)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = "floods-reopen" if args.reopen else "floods"
    (out / f"{name}.json").write_text(json.dumps(result, indent=1))
    text = markdown(result)
    (out / f"{name}.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
