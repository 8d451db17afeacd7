"""Time from the end of speech to the transcript: one-shot vs streaming plugin, cold and warm,
over an emulated uplink (the fake Google reads the upload at a fixed rate).

    python bench/streaming.py [--quick] [--out bench/results]

Utterances are fed in real time in 100 ms chunks, as OVOS's listener does. "Cold" is a fresh
engine (no pooled connection); "warm" is an engine that has just recognised something. The fake
speaks plain HTTP on loopback, so a cold start costs a TCP connect but no TLS handshake: cold
figures here understate what a real cold start costs against Google.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "tests")]

from fake_google import FakeGoogle  # noqa: E402
from stats import machine, summarize  # noqa: E402

CHUNK_SECONDS = 0.1
RATE = 16000
KEY = "bench-key"


def utterance(seconds: float) -> bytes:
    """A non-silent 16 kHz 16-bit tone with a syllable-rate envelope."""
    out = bytearray()
    for i in range(int(seconds * RATE)):
        level = 0.3 + 0.3 * math.sin(2 * math.pi * 4 * i / RATE)
        out += int(12000 * level * math.sin(2 * math.pi * 220 * i / RATE)).to_bytes(2, "little", signed=True)
    return bytes(out)


def make_engine(endpoint: str, streaming: bool) -> Any:
    config = {"key": KEY, "endpoint": endpoint, "lang": "en-US", "timeout": 30, "max_alternatives": 1}
    if streaming:
        from ovos_stt_plugin_google_apikey.streaming import GoogleAPIKeyStreamingSTT
        return GoogleAPIKeyStreamingSTT(config)
    from ovos_stt_plugin_google_apikey.plugin import GoogleAPIKeySTT
    return GoogleAPIKeySTT(config)


def one_utterance(engine: Any, pcm: bytes, streaming: bool) -> float:
    """Seconds from the end of speech to the transcript."""
    chunk = int(CHUNK_SECONDS * RATE) * 2
    if streaming:
        engine.stream_start()
    start = time.monotonic()
    for n, offset in enumerate(range(0, len(pcm), chunk), start=1):
        time.sleep(max(0.0, start + n * CHUNK_SECONDS - time.monotonic()))   # the mic's pace
        if streaming:
            engine.stream_data(pcm[offset:offset + chunk])
    ended = time.monotonic()
    result = engine.transcribe() if streaming else engine.transcribe(pcm)
    took = time.monotonic() - ended
    if not result or not result[0][0].startswith("audio "):
        raise RuntimeError(f"unexpected transcript {result!r}")
    return took


def run(quick: bool, delay: float) -> Dict[str, Any]:
    lengths = [2.0] if quick else [2.0, 5.0, 10.0]
    uplinks = [5.0] if quick else [1.0, 5.0, 20.0]
    reps = 1 if quick else 3
    rows: List[Dict[str, Any]] = []
    with FakeGoogle(valid_keys=(KEY,), delay=delay) as fake:
        for mbit in uplinks:
            fake.read_rate_bps = mbit * 1e6 / 8
            for seconds in lengths:
                pcm = utterance(seconds)
                for streaming in (False, True):
                    for warmth in ("cold", "warm"):
                        times = []
                        engine = make_engine(fake.endpoint, streaming)
                        for _ in range(reps):
                            if warmth == "cold":
                                engine.shutdown()
                                engine = make_engine(fake.endpoint, streaming)
                            else:
                                engine.transcribe(utterance(0.3))       # leaves a pooled connection
                            times.append(one_utterance(engine, pcm, streaming))
                        engine.shutdown()
                        stats = summarize(times)
                        rows.append({"plugin": "streaming" if streaming else "one-shot", "connection": warmth,
                                     "uplink_mbit": mbit, "utterance_s": seconds,
                                     "p50_ms": stats["p50"] * 1000, "max_ms": stats["max"] * 1000,
                                     "over_delay_p50_ms": (stats["p50"] - delay) * 1000, "n": stats["n"]})
                        print(f"{rows[-1]['plugin']:9} {warmth:4} {mbit:4g} Mbit/s {seconds:4g} s: "
                              f"{rows[-1]['p50_ms']:7.1f} ms", file=sys.stderr)
    streaming_rows = [r for r in rows if r["plugin"] == "streaming"]
    worst = max(r["over_delay_p50_ms"] for r in streaming_rows)
    return {"machine": machine(), "fake_delay_ms": delay * 1000, "chunk_ms": CHUNK_SECONDS * 1000,
            "reps": reps, "rows": rows,
            "target": {"streaming_within_ms_of_delay": 20, "worst_streaming_over_delay_p50_ms": worst,
                       "pass": worst <= 20}}


def markdown(result: Dict[str, Any]) -> str:
    lines = [f"Fake recognition delay {result['fake_delay_ms']:.0f} ms; utterances fed in real time in "
             f"{result['chunk_ms']:.0f} ms chunks; p50 of {result['reps']} run(s); "
             f"{result['machine']['cpu_model']}, {result['machine']['cores']} cores, "
             f"Python {result['machine']['python']}.", "",
             "| uplink | utterance | one-shot cold | one-shot warm | streaming cold | streaming warm |",
             "|---|---|---|---|---|---|"]
    cells: Dict[tuple, float] = {(r["uplink_mbit"], r["utterance_s"], r["plugin"], r["connection"]): r["p50_ms"]
                                 for r in result["rows"]}
    for mbit, seconds in sorted({(r["uplink_mbit"], r["utterance_s"]) for r in result["rows"]}):
        values = [cells[(mbit, seconds, p, c)] for p in ("one-shot", "streaming") for c in ("cold", "warm")]
        lines.append(f"| {mbit:g} Mbit/s | {seconds:g} s | " + " | ".join(f"{v:.0f} ms" for v in values) + " |")
    target = result["target"]
    lines += ["", f"Target: streaming within {target['streaming_within_ms_of_delay']} ms of the fake's delay: "
                  f"worst p50 {target['worst_streaming_over_delay_p50_ms']:+.1f} ms over it: "
                  f"{'PASS' if target['pass'] else 'MISS'}."]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one small case, for CI's smoke run")
    parser.add_argument("--delay", type=float, default=0.2, help="the fake's recognition delay (s)")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    result = run(args.quick, args.delay)
    args.out.mkdir(parents=True, exist_ok=True)
    name = "streaming-quick" if args.quick else "streaming"
    (args.out / f"{name}.json").write_text(json.dumps(result, indent=2))
    table = markdown(result)
    (args.out / f"{name}.md").write_text(table + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
