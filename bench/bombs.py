"""Audio bombs against the server at its defaults: time to answer, the server's peak memory and
what reached Google, for one source tree (``--source``, default this one).

    python bench/bombs.py --label after                            # this tree
    python bench/bombs.py --label before --source /tmp/main-4706ac5  # an older checkout
    python bench/bombs.py --tiny --out DIR                         # the CI smoke run

Each bomb goes to a fresh server process (``ovos-google-stt serve`` as README starts it, with
``--endpoint`` pointing at a fake Google in this process), so its peak RSS (VmHWM) is its own.
Results are merged by label into ``--out``/bombs.json; bombs.md holds the table of all labels.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import requests
import soundfile
from children import KEY, constant_answer, isolate, start_fake
from stats import machine, proc_memory

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(tempfile.gettempdir()) / "ovos-google-stt-bench-bombs"
# name -> (what it is, how it is posted); sizes per mode
SIZES = {"full": dict(flac_s=7200, opus_s=3600, raw_mb=10, junk=1_000_000, reps=3),
         "tiny": dict(flac_s=600, opus_s=180, raw_mb=1, junk=100_000, reps=1)}


def silence(path: Path, seconds: int, fmt: str, subtype: str, rate: int, channels: int) -> bytes:
    """Silence as FLAC/Ogg, written a block at a time and cached (1 h of Opus takes ~30 s)."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        block = np.zeros((rate * 10, channels), dtype=np.int16)
        buffer = io.BytesIO()
        with soundfile.SoundFile(buffer, "w", rate, channels, format=fmt, subtype=subtype) as out:
            for _ in range(seconds // 10):
                out.write(block)
        path.write_bytes(buffer.getvalue())
    return path.read_bytes()


def junk_wav(chunks: int) -> bytes:
    """0.1 s of PCM after ``chunks`` empty JUNK chunks (what stalled the event loop)."""
    fmt = b"fmt " + (16).to_bytes(4, "little") + bytes.fromhex("01000100803e0000007d00000200 1000".replace(" ", ""))
    data = b"data" + (3200).to_bytes(4, "little") + bytes(3200)
    body = b"WAVE" + fmt + b"JUNK\0\0\0\0" * chunks + data
    return b"RIFF" + len(body).to_bytes(4, "little") + body


def bombs(sizes: Dict[str, int]) -> List[Tuple[str, bytes, Dict[str, Any]]]:
    """(name, body, requests.post kwargs) for each bomb."""
    flac_s, opus_s = sizes["flac_s"], sizes["opus_s"]
    flac = silence(CACHE / f"flac-{flac_s}.flac", flac_s, "FLAC", "PCM_16", 44100, 2)
    opus = silence(CACHE / f"opus-{opus_s}.ogg", opus_s, "OGG", "OPUS", 48000, 1)
    tone = (np.sin(np.arange(16000) * 2 * np.pi * 440 / 16000) * 8000).astype("<i2").tobytes()
    raw = (tone * (sizes["raw_mb"] * 1024 * 1024 // len(tone) + 1))[:sizes["raw_mb"] * 1000 * 1000]
    return [
        (f"FLAC, {flac_s // 60} min of silence", flac, {"headers": {"Content-Type": "audio/flac"}}),
        (f"Ogg Opus, {opus_s // 60} min of silence", opus, {"headers": {"Content-Type": "audio/ogg"}}),
        (f"raw PCM, {sizes['raw_mb']} MB as 1000 Hz 8-bit", raw,
         {"params": {"sample_rate": 1000, "sample_width": 1}}),
        (f"WAV, {sizes['junk']:,} empty JUNK chunks", junk_wav(sizes["junk"]), {}),
    ]


class Server:
    """``ovos-google-stt serve`` from ``source`` in its own process, at its defaults."""

    def __init__(self, source: Path, endpoint: str) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        env = {**os.environ, "PYTHONPATH": str(source), "GOOGLE_STT_API_KEY": KEY}
        self.proc = subprocess.Popen([sys.executable, "-m", "ovos_stt_plugin_google_apikey.cli", "serve",
                                      "--port", str(self.port), "--endpoint", endpoint, "--lang", "en-US"],
                                     env=env, cwd=tempfile.gettempdir(), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(self.url + "/status", timeout=2)
                break
            except requests.ConnectionError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the server did not start (exit {self.proc.poll()})") from None
                time.sleep(0.1)

    def memory(self) -> Dict[str, int]:
        return proc_memory(self.proc.pid)

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def attack(source: Path, fake: Any, bodies: List[Tuple[bytes, Dict[str, Any]]]) -> Dict[str, Any]:
    """Post ``bodies`` at once to a fresh server; what it cost."""
    fake.reset()
    fake.recognizer = constant_answer        # reset() restores the default, which costs CPU here
    server = Server(source, fake.endpoint)
    try:
        start_rss = server.memory()["vmrss_kib"]
        started = time.monotonic()

        def post(item: Tuple[bytes, Dict[str, Any]]) -> Tuple[int, str, float]:
            body, kwargs = item
            reply = requests.post(server.url + "/stt", data=body, timeout=900, **kwargs)
            return reply.status_code, reply.text.strip()[:160], time.monotonic() - started

        with ThreadPoolExecutor(len(bodies)) as pool:
            answers = list(pool.map(post, bodies))
        peak = server.memory()["vmhwm_kib"]
    finally:
        server.close()
    sent = [r for r in fake.requests if r.path.endswith(":recognize")]
    return {"status": [a[0] for a in answers], "answer": answers[0][1],
            "seconds": max(a[2] for a in answers), "start_rss_mib": round(start_rss / 1024, 1),
            "peak_rss_mib": round(peak / 1024, 1), "extra_mib": round((peak - start_rss) / 1024, 1),
            "google_requests": len(sent), "google_bytes": sum(len(r.body) for r in sent)}


def measure(source: Path, sizes: Dict[str, int], four: bool) -> Dict[str, Any]:
    fake = start_fake(0.0)
    rows = []
    try:
        for name, body, kwargs in bombs(sizes):
            runs = [attack(source, fake, [(body, kwargs)]) for _ in range(sizes["reps"])]
            rows.append(_row(name, len(body), 1, runs))
            print(f"  {name}: {rows[-1]['status']} in {rows[-1]['seconds']:.2f} s, peak "
                  f"{rows[-1]['peak_rss_mib']} MiB, {rows[-1]['google_bytes']:,} B to Google", flush=True)
        if four:
            name, body, kwargs = bombs(sizes)[0]
            runs = [attack(source, fake, [(body, kwargs)] * 4) for _ in range(sizes["reps"])]
            rows.append(_row(f"four of: {name}", len(body), 4, runs))
    finally:
        fake.stop()
    return {"rows": rows}


def _row(name: str, size: int, at_once: int, runs: List[Dict[str, Any]]) -> Dict[str, Any]:
    def median(key: str) -> float:
        return statistics.median(r[key] for r in runs)
    return {"bomb": name, "body_bytes": size, "at_once": at_once, "status": runs[0]["status"],
            "answer": runs[0]["answer"], "seconds": median("seconds"),
            "seconds_runs": [round(r["seconds"], 3) for r in runs], "start_rss_mib": median("start_rss_mib"),
            "peak_rss_mib": median("peak_rss_mib"), "extra_mib": median("extra_mib"),
            "google_requests": median("google_requests"), "google_bytes": median("google_bytes"), "reps": len(runs)}


def markdown(results: Dict[str, Any]) -> str:
    lines = ["| bomb | body | tree | answer | time (median) | server peak RSS | to Google |",
             "|---|---|---|---|---|---|---|"]
    labels = [label for label in ("before", "after") if label in results] + \
             [label for label in results if label not in ("before", "after", "machine")]
    names = []
    for label in labels:
        names += [row["bomb"] for row in results[label]["rows"] if row["bomb"] not in names]
    for name in names:
        for label in labels:
            row = next((r for r in results[label]["rows"] if r["bomb"] == name), None)
            if row is None:
                continue
            status = "/".join(str(s) for s in sorted(set(row["status"])))
            lines.append(f"| {name} | {row['body_bytes'] / 1e6:.2f} MB | {label} ({results[label]['commit']}) | "
                         f"{status} | {row['seconds']:.2f} s | {row['peak_rss_mib']:.0f} MiB "
                         f"(+{row['extra_mib']:.0f}) | {row['google_requests']:.0f} requests, "
                         f"{row['google_bytes'] / 1e6:.1f} MB |")
    return "\n".join(lines) + "\n"


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--label", default="after", help="the key these results are stored under")
    parser.add_argument("--source", default=str(ROOT), help="the source tree whose server is attacked")
    parser.add_argument("--tiny", action="store_true", help="small bombs, one run each (CI smoke)")
    parser.add_argument("--no-four", action="store_true", help="skip four FLAC bombs at once "
                                                             "(10 GB before the budget)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = parser.parse_args(argv)
    isolate()
    source = Path(args.source).resolve()
    commit = subprocess.run(["git", "-C", str(source), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip() or source.name
    print(f"bombs against {source} ({commit})", flush=True)
    measured = measure(source, SIZES["tiny" if args.tiny else "full"], four=not args.no_four)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "bombs.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    results[args.label] = {"commit": commit, **measured}
    results["machine"] = machine()
    path.write_text(json.dumps(results, indent=1) + "\n")
    table = markdown(results)
    (out / "bombs.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
