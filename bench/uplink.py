"""Time to transcript over a slow uplink: 5, 20 and 55 s of audio at 1, 5 and 20 Mbit/s, with the
plugin's default `timeout` (10 s), against a bare `requests.post` of the same JSON (the baseline,
measured in the same run). The uplink is the fake Google's throttled receive.

    python bench/uplink.py [--quick] [--out bench/results]

Before issue 11 the one `timeout` ran from the start of the request, upload included: a case
whose measured time to transcript is over 10 s would have been cut by it (column "over 10 s").
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

import requests

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "tests")]

from fake_google import FakeGoogle  # noqa: E402
from stats import machine, summarize  # noqa: E402
from streaming import utterance  # noqa: E402

from ovos_stt_plugin_google_apikey.plugin import GoogleAPIKeySTT  # noqa: E402
from ovos_stt_plugin_google_apikey.settings import Settings  # noqa: E402
from ovos_stt_plugin_google_apikey.wire import build_recognize_body, dump_body  # noqa: E402

KEY = "bench-key"
TIMEOUT = 10.0


def plugin_once(engine: GoogleAPIKeySTT, pcm: bytes) -> float:
    started = time.monotonic()
    text = engine.execute(pcm)
    took = time.monotonic() - started
    if not text.startswith("audio "):
        raise RuntimeError(f"unexpected transcript {text!r}")
    return took


def baseline_once(session: requests.Session, url: str, payload: bytes) -> float:
    started = time.monotonic()
    reply = session.post(url, data=payload, headers={"X-Goog-Api-Key": KEY,
                                                     "Content-Type": "application/json"}, timeout=300)
    took = time.monotonic() - started
    if reply.status_code != 200 or "results" not in reply.json():
        raise RuntimeError(f"baseline got {reply.status_code}: {reply.text[:200]}")
    return took


def run(quick: bool, delay: float) -> Dict[str, Any]:
    lengths = [5.0] if quick else [5.0, 20.0, 55.0]
    uplinks = [20.0] if quick else [1.0, 5.0, 20.0]
    reps = 1 if quick else 3
    rows: List[Dict[str, Any]] = []
    with FakeGoogle(valid_keys=(KEY,), delay=delay) as fake:
        engine = GoogleAPIKeySTT({"key": KEY, "endpoint": fake.endpoint, "lang": "en-US",
                                  "timeout": TIMEOUT, "retries": 0, "max_alternatives": 1})
        session = requests.Session()
        settings = Settings.from_mapping({"key": KEY, "max_alternatives": 1}, env={})
        engine.execute(utterance(0.3))                         # both warm: one pooled connection each
        baseline_once(session, fake.url, dump_body(build_recognize_body(utterance(0.3), "en-US", **settings.body_options())))
        for mbit in uplinks:
            fake.read_rate_bps = mbit * 1e6 / 8
            for seconds in lengths:
                pcm = utterance(seconds)
                payload = dump_body(build_recognize_body(pcm, "en-US", model="latest_short",
                                                           **settings.body_options()))
                plugin, bare = [], []
                for _ in range(reps):                          # interleaved: the same noise for both
                    plugin.append(plugin_once(engine, pcm))
                    bare.append(baseline_once(session, fake.url, payload))
                p, b = summarize(plugin)["p50"], summarize(bare)["p50"]
                rows.append({"uplink_mbit": mbit, "audio_s": seconds, "body_bytes": len(payload),
                             "upload_s_at_rate": len(payload) / (mbit * 1e6 / 8),
                             "plugin_p50_s": p, "plugin_max_s": max(plugin), "baseline_p50_s": b,
                             "ratio_p50": p / b, "over_timeout": p > TIMEOUT, "n": reps})
                print(f"{mbit:4g} Mbit/s {seconds:4g} s: plugin {p:6.2f} s, bare {b:6.2f} s", file=sys.stderr)
        engine.shutdown()
        session.close()
    return {"machine": machine(), "fake_delay_ms": delay * 1000, "timeout_s": TIMEOUT, "reps": reps,
            "rows": rows}


def markdown(result: Dict[str, Any]) -> str:
    lines = [f"Fake recognition delay {result['fake_delay_ms']:.0f} ms; plugin `timeout` "
             f"{result['timeout_s']:g} s, no retries; warm connections; p50 of {result['reps']} run(s); "
             f"{result['machine']['cpu_model']}, {result['machine']['cores']} cores, "
             f"Python {result['machine']['python']}.", "",
             "| uplink | audio | body | plugin | bare requests.post | ratio | over 10 s (one deadline from the start would cut it) |",
             "|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['uplink_mbit']:g} Mbit/s | {r['audio_s']:g} s | {r['body_bytes'] / 1e6:.2f} MB | "
                     f"{r['plugin_p50_s']:.2f} s | {r['baseline_p50_s']:.2f} s | {r['ratio_p50']:.3f} | "
                     f"{'yes' if r['over_timeout'] else 'no'} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one small case, for CI's smoke run")
    parser.add_argument("--delay", type=float, default=0.2, help="the fake's recognition delay (s)")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    result = run(args.quick, args.delay)
    args.out.mkdir(parents=True, exist_ok=True)
    name = "uplink-quick" if args.quick else "uplink"
    (args.out / f"{name}.json").write_text(json.dumps(result, indent=2))
    table = markdown(result)
    (args.out / f"{name}.md").write_text(table + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
