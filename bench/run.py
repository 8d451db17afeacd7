"""Benchmark the plugin and its server against a fake Google on loopback: one command.

    python bench/run.py [--quick | --tiny] [--out bench/results] [--delay 0.02]

Writes results.json, results.md and results.png into --out and prints the markdown.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

from children import isolate

# Sizes per mode: "full" for the committed figures, "quick" for a look, "tiny" for the CI smoke test.
MODES: Dict[str, Dict[str, Any]] = {
    "full": dict(overhead_reps=40, load_reps=3, load_rounds=10, load_min=50, load_delay=0.2,
                 rss_after=(1000, 5000), long_minutes=5, long_delay=0.5, long_reps=3, upload_seconds=30,
                 conn_count=100, conn_delay=0.05),
    "quick": dict(overhead_reps=12, load_reps=2, load_rounds=5, load_min=20, load_delay=0.2,
                  rss_after=(250, 1000), long_minutes=5, long_delay=0.2, long_reps=1, upload_seconds=15,
                  conn_count=100, conn_delay=0.05),
    "tiny": dict(overhead_reps=3, load_reps=1, load_rounds=2, load_min=4, load_delay=0.05,
                 rss_after=(40, 80), long_minutes=2, long_delay=0.05, long_reps=1, upload_seconds=4,
                 conn_count=20, conn_delay=0.02),
}
DURATIONS = (2, 5, 15)
CONCURRENCY = (1, 8, 32, 64)
LONG_WORKERS = (1, 2, 4, 8)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_const", dest="mode", const="quick", help="scaled down (~2 min)")
    size.add_argument("--tiny", action="store_const", dest="mode", const="tiny",
                      help="smallest run that still produces every figure (the CI smoke test)")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"),
                        help="directory for results.json/.md/.png (default: bench/results)")
    parser.add_argument("--delay", type=float, default=0.02,
                        help="the fake's recognition delay for the overhead runs, seconds (default 0.02)")
    parser.add_argument("--load-delay", type=float, help="the fake's delay under load (default 0.2)")
    parser.add_argument("--long-delay", type=float, help="the fake's delay per long-audio part (default 0.5)")
    parser.add_argument("--server-workers", type=int, default=32, help="server worker threads (default 32)")
    parser.add_argument("--server-queue", type=int, default=32, help="server queue beyond those (default 32)")
    parser.add_argument("--max-workers", type=int, default=0,
                        help="the server engine's max_workers setting (default: the plugin's default)")
    parser.add_argument("--only", nargs="*", choices=("overhead", "server", "long", "upload", "connections"),
                        help="run only these parts (the others are left out of the JSON)")
    args = parser.parse_args(argv)
    mode = args.mode or "full"
    sizes = dict(MODES[mode])
    if args.load_delay is not None:
        sizes["load_delay"] = args.load_delay
    if args.long_delay is not None:
        sizes["long_delay"] = args.long_delay
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    isolate()
    import load
    import measure
    import report
    from stats import machine

    wanted = set(args.only or ("overhead", "server", "long", "upload", "connections"))
    results: Dict[str, Any] = {"mode": mode, "machine": machine(), "sizes": sizes,
                               "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    began = time.monotonic()

    def step(name: str, key: str, fn: Any) -> None:
        if name in wanted:
            print(f"[bench] {name} ...", file=sys.stderr, flush=True)
            t = time.monotonic()
            results[key] = fn()
            print(f"[bench] {name} done in {time.monotonic() - t:.1f} s", file=sys.stderr, flush=True)

    step("overhead", "overhead", lambda: measure.plugin_overhead(DURATIONS, sizes["overhead_reps"], args.delay))
    step("upload", "upload", lambda: measure.upload_size(sizes["upload_seconds"]))
    step("connections", "connections", lambda: measure.connections(sizes["conn_count"], sizes["conn_delay"]))
    step("long", "long_audio", lambda: measure.long_audio(sizes["long_minutes"], LONG_WORKERS,
                                                          sizes["long_delay"], sizes["long_reps"]))
    step("server", "server", lambda: load.server_load(
        CONCURRENCY, sizes["load_rounds"], sizes["load_min"], sizes["load_reps"], sizes["load_delay"],
        5.0, args.server_workers, args.server_queue, sizes["rss_after"], rss_clients=32,
        max_workers=args.max_workers or None))
    results["elapsed_s"] = time.monotonic() - began
    complete = wanted == {"overhead", "server", "long", "upload", "connections"}
    results["targets"] = report.targets(results) if complete else []
    results["plot"], results["plot_skipped"] = None, ""
    if complete:
        skipped = report.plot(results, out / "results.png")
        results["plot"], results["plot_skipped"] = ("results.png", "") if skipped is None else (None, skipped)
    (out / "results.json").write_text(json.dumps(_finite(results), indent=2) + "\n", encoding="utf-8")
    if complete:
        text = report.markdown(results)
        (out / "results.md").write_text(text, encoding="utf-8")
        print(text)
    else:
        print(json.dumps(_finite(results), indent=2))
    return 0


def _finite(value: Any) -> Any:
    """NaN/inf as null: JSON has no such numbers."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


if __name__ == "__main__":
    sys.exit(main())
