"""Where the server's time goes: `py-spy record --gil` on `ovos-google-stt serve` (defaults) while
32 clients post 4.5 s clips to it (the fake answering in 150 ms), then the GIL-held samples by
area. py-spy (pip install py-spy) needs ptrace rights (root, or ptrace_scope 0).

    python bench/profile.py [--seconds 12] [--raw OUT.txt]
"""
from __future__ import annotations

import argparse
import collections
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE)]

from capacity import Served  # noqa: E402
from load import Child, drive  # noqa: E402
from speechlike import RATE, speech_like  # noqa: E402

WORKER = ["_worker (", "Thread._bootstrap"]        # a stack on a worker thread: the Google call
# A sample on the event loop goes to the area of its innermost frame that names one.
AREAS = [("HTTP parsing (h11)", ["h11/"]),
         ("HTTP parsing (httptools)", ["HttpToolsProtocol.data_received", "GuardedProtocol.on_"]),
         ("logging", ["logging/__init__", "ModuleLog"]),
         ("FastAPI dependencies and routing", ["solve_dependencies", "fastapi/dependencies",
                                               "get_request_handler", "fastapi/routing"]),
         ("thread hops (anyio)", ["anyio", "run_in_threadpool"]),
         ("decoding", ["decoding.py", "wavfile.py"]),
         ("the server's own code", ["ovos_stt_plugin_google_apikey/server", "apikey/uploads",
                                    "apikey/admission", "apikey/metrics"]),
         ("Starlette middleware", ["starlette/"]),
         ("event loop and sockets", ["selector_events", "selectors.py", "base_events", "asyncio/events"])]


def areas(raw: str) -> Dict[str, int]:
    counts: Dict[str, int] = collections.Counter()
    with open(raw, encoding="utf-8") as f:
        for line in f:
            stack, _, n = line.rstrip().rpartition(" ")
            counts[_area(stack)] += int(n)
    return counts


def _area(stack: str) -> str:
    if any(key in stack for key in WORKER):
        return "the Google call (worker threads)"
    for frame in reversed(stack.split(";")):
        for area, keys in AREAS:
            if any(key in frame for key in keys):
                return area
    return "other"


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=12)
    parser.add_argument("--raw", help="keep py-spy's raw (collapsed) stacks here")
    parser.add_argument("--from", dest="saved", metavar="RAW", help="only sum up stacks saved earlier")
    args = parser.parse_args(argv)
    if args.saved:
        return report(args.saved, None)
    spy_bin = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    from ovos_stt_plugin_google_apikey import audio as audio_mod
    wav = audio_mod.to_wav(audio_mod.PCM(speech_like(4.5, seed=11), RATE, 2))
    raw = args.raw or os.path.join(tempfile.mkdtemp(), "stacks.txt")
    fake = Child("fake", "--delay", "0.15")
    server = Served(fake.first_line[0], 1)
    url = server.url + "/stt?lang=en-US"
    try:
        drive(url, wav, {"Content-Type": "audio/wav"}, 32, 64)             # warm
        spy = subprocess.Popen([spy_bin, "record", "--gil", "-p", str(server.proc.pid), "-d", str(args.seconds),
                                "-r", "200", "-f", "raw", "-o", raw, "--nonblocking"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1)
        began, sent = time.monotonic(), 0
        while time.monotonic() - began < args.seconds - 1:
            drive(url, wav, {"Content-Type": "audio/wav"}, 32, 320)
            sent += 320
        spy.wait()
    finally:
        server.close()
        fake.close()
    return report(raw, sent)


def report(raw: str, sent: Optional[int]) -> int:
    counts = areas(raw)
    total = sum(counts.values())
    per = f" over ~{sent} requests ({total * 5 / max(1, sent):.2f} ms of GIL per request)" if sent else ""
    print(f"{total} GIL-held samples at 200 Hz{per}")
    for name, n in sorted(counts.items(), key=lambda kv: -kv[1]):
        print(f"{100 * n / total:5.1f} %  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
