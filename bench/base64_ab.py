"""What pybase64 (the [server] extra) saves the server: `ovos-google-stt serve` at its defaults
with pybase64, and the same server in a Python where it cannot be imported (the stdlib's base64),
in alternating rounds against one fake Google on loopback answering in 150 ms.

    python bench/base64_ab.py [--rounds 4] [--requests 320] [--out bench/results]

Per round and server: 32 clients posting 4.5 s clips (server CPU per request, requests/s), then
1 client (its p50 latency). Prints the medians over the rounds and the ratios with / without.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE)]

import capacity  # noqa: E402
import stats  # noqa: E402
from load import Child, drive  # noqa: E402
from speechlike import RATE, speech_like  # noqa: E402

from ovos_stt_plugin_google_apikey import audio as audio_mod  # noqa: E402

HIDE = "import sys\nsys.modules['pybase64'] = None     # import pybase64 -> ImportError\n"
ARMS = ("pybase64", "stdlib base64")


def maps_pybase64(pid: int) -> bool:
    """Whether pybase64's extension is loaded in ``pid`` (its shared object is mapped)."""
    with open(f"/proc/{pid}/maps", encoding="utf-8", errors="replace") as f:
        return any(os.path.basename(line.split()[-1]).startswith("_pybase64.") for line in f if "/" in line)


def measure(endpoint: str, wav: bytes, requests: int, hide: Optional[str]) -> Dict[str, float]:
    root = capacity.ROOT
    if hide:       # Served puts capacity.ROOT on the server's PYTHONPATH: a sitecustomize first
        capacity.ROOT = f"{hide}{os.pathsep}{root}"     # type: ignore[assignment]
    try:
        server = capacity.Served(endpoint, 1)
    finally:
        capacity.ROOT = root
    try:
        url, headers = server.url + "/stt?lang=en-US", {"Content-Type": "audio/wav"}
        drive(url, wav, headers, 32, 64)                      # warm-up, outside the CPU window
        if maps_pybase64(server.proc.pid) == bool(hide):
            raise SystemExit(f"the server {'with' if hide else 'without'} pybase64 hiding "
                             f"{'still' if hide else 'never'} loaded it")
        cpu = server.cpu_seconds()
        latencies, failures, wall = drive(url, wav, headers, 32, requests)
        cpu = server.cpu_seconds() - cpu
        one, _, _ = drive(url, wav, headers, 1, 60)
        if not latencies or not one:
            raise SystemExit(f"every request failed ({failures} failures)")
        return {"cpu_ms_per_request": cpu / len(latencies) * 1000, "rps": len(latencies) / wall,
                "p50_ms_1_client": statistics.median(one) * 1000, "failures": failures}
    finally:
        server.close()


def markdown(result: Dict[str, Any]) -> str:
    med = result["medians"]
    lines = [f"# pybase64 against the stdlib's base64 in the server (bench/base64_ab.py, "
             f"{result['rounds']} alternating rounds, {result['commit']})", "",
             f"Machine: {result['machine']['cpu_model']}, {result['machine']['cores']} cores, "
             f"Python {result['machine']['python']}, load {result['machine']['loadavg_at_start']}.", "",
             f"| | {' | '.join(ARMS)} | ratio |", "|---|---|---|---|"]
    for m, label in [("cpu_ms_per_request", "server CPU per request at 32 clients, ms"),
                     ("rps", "requests/s at 32 clients"), ("p50_ms_1_client", "p50 latency at 1 client, ms")]:
        a, b = med[ARMS[0]][m], med[ARMS[1]][m]
        lines.append(f"| {label} | {a:.2f} | {b:.2f} | {a / b:.3f} |")
    return "\n".join(lines) + "\n"


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--requests", type=int, default=320)
    parser.add_argument("--out", help="a folder for base64-ab.md and .json (default: print only)")
    args = parser.parse_args(argv)
    wav = audio_mod.to_wav(audio_mod.PCM(speech_like(4.5, seed=11), RATE, 2))
    result: Dict[str, Any] = {"machine": stats.machine(), "commit": stats.commit(), "rounds": args.rounds}
    fake = Child("fake", "--delay", "0.15")
    rows: Dict[str, List[Dict[str, float]]] = {arm: [] for arm in ARMS}
    try:
        with tempfile.TemporaryDirectory() as hide:
            Path(hide, "sitecustomize.py").write_text(HIDE, encoding="utf-8")
            for n in range(args.rounds):
                print(f"[base64_ab] round {n + 1} of {args.rounds}", file=sys.stderr, flush=True)
                for arm in ARMS if n % 2 == 0 else ARMS[::-1]:         # each goes first in turn
                    rows[arm].append(measure(fake.first_line[0], wav, args.requests,
                                             hide if arm != ARMS[0] else None))
                time.sleep(0.5)
    finally:
        fake.close()
    result["samples"] = rows
    result["medians"] = {k: {m: statistics.median(r[m] for r in v) for m in v[0]} for k, v in rows.items()}
    text = markdown(result)
    print(text)
    print(json.dumps(result, indent=1), file=sys.stderr)
    stats.write_results(args.out, "base64-ab", result, text)
    return 0



if __name__ == "__main__":
    sys.exit(main())
