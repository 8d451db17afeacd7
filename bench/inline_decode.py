"""Is 1 MiB the right size below which the server decodes a WAV on its event loop? For WAVs
just under that size in several formats: how long the loop would be blocked decoding one inline
(the server's own `uploads._decode`), against what the alternative costs: one hop to a worker
thread and back (`run_in_threadpool` of nothing, as `read_audio` does for larger bodies).

    python bench/inline_decode.py [--runs 50]

Medians of --runs, in the same run; prints a markdown table.
"""
from __future__ import annotations

import argparse
import asyncio
import io
import random
import statistics
import sys
import time
import wave
from pathlib import Path
from typing import List, Optional

sys.path[:0] = [str(Path(__file__).resolve().parent.parent), str(Path(__file__).resolve().parent)]

import stats  # noqa: E402
from starlette.concurrency import run_in_threadpool  # noqa: E402

from ovos_stt_plugin_google_apikey.server import uploads  # noqa: E402

SIZE = uploads.INLINE_DECODE_BYTES - 1024
FORMATS = [(16000, 1, 2), (44100, 2, 2), (48000, 1, 4), (8000, 1, 1)]   # rate, channels, bytes


def wav(rate: int, channels: int, width: int, size: int) -> bytes:
    frames = random.Random(1).randbytes(size // (channels * width) * channels * width)
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(frames)
    return out.getvalue()


def decode_ms(data: bytes, runs: int) -> float:
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        uploads._decode(data, None, None, "audio/wav", None)
        times.append(time.perf_counter() - began)
    return statistics.median(times) * 1000


async def hop_ms(runs: int) -> float:
    for _ in range(10):                                    # the pool's threads exist
        await run_in_threadpool(lambda: None)
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        await run_in_threadpool(lambda: None)
        times.append(time.perf_counter() - began)
    return statistics.median(times) * 1000


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args(argv)
    hop = asyncio.run(hop_ms(args.runs))
    m = stats.machine()
    print(f"# bench/inline_decode.py on {stats.commit()}: {m['cpu_model']}, {m['cores']} cores, Python "
          f"{m['python']}, load {m['loadavg_at_start']}\n")
    print(f"WAVs of {SIZE} bytes; one hop to a worker thread and back: {hop:.3f} ms (median of {args.runs})\n")
    print("| WAV | seconds of audio | inline decode (median) | vs the hop |")
    print("|---|---|---|---|")
    for rate, channels, width in FORMATS:
        ms = decode_ms(wav(rate, channels, width, SIZE), args.runs)
        seconds = SIZE / (rate * channels * width)
        print(f"| {rate} Hz, {channels} ch, {8 * width}-bit | {seconds:.1f} | {ms:.3f} ms | {ms / hop:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
