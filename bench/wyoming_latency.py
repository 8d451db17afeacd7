"""End of audio (AudioStop sent) to Transcript received, Home Assistant's way, over 1, 5 and 20
Mbit/s uplinks: `ovos-google-stt wyoming` against wyoming-ovos-stt 0.2.0 serving the same plugin
(when its venv, built by tests/test_wyoming_compat.py, exists). The uplink is the fake Google's
throttled receive (as bench/uplink.py); audio is fed in real time in 100 ms chunks.

    python bench/wyoming_latency.py [--quick] [--seconds 4] [--reps 3] [--out bench/results]

(Not bench/wyoming.py: a script's directory comes first on sys.path, and that name would
shadow the wyoming package.)
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path[:0] = [str(HERE), str(REPO / "tests")]

from fake_google import FakeGoogle  # noqa: E402
from stats import machine, summarize  # noqa: E402
from streaming import utterance  # noqa: E402
from venvs import (  # noqa: E402
    default_cache_dir,
    free_port,
    isolated_env,
    start_process,
    stop_process,
    venv_bin,
    wait_port,
    write_mycroft_conf,
)
from wyoming.asr import Transcribe, Transcript  # noqa: E402
from wyoming.audio import AudioChunk, AudioStart, AudioStop  # noqa: E402
from wyoming.client import AsyncTcpClient  # noqa: E402

from ovos_stt_plugin_google_apikey.settings import PLUGIN_ID  # noqa: E402

KEY = "bench-key"
RATE = 16000
CHUNK = int(0.1 * RATE) * 2


async def home_assistant(port: int, pcm: bytes, language: str) -> float:
    """Seconds from AudioStop to the Transcript, feeding the audio at the microphone's pace."""
    async with AsyncTcpClient("127.0.0.1", port) as client:
        await client.write_event(Transcribe(language=language).event())
        await client.write_event(AudioStart(rate=RATE, width=2, channels=1).event())
        start = time.monotonic()
        for n, offset in enumerate(range(0, len(pcm), CHUNK), start=1):
            await client.write_event(AudioChunk(rate=RATE, width=2, channels=1,
                                                audio=pcm[offset:offset + CHUNK]).event())
            await asyncio.sleep(max(0.0, start + n * 0.1 - time.monotonic()))
        await client.write_event(AudioStop().event())
        stopped = time.monotonic()
        while True:
            event = await asyncio.wait_for(client.read_event(), 120)
            if event is None:
                raise RuntimeError("the server closed without a transcript")
            if Transcript.is_type(event.type):
                took = time.monotonic() - stopped
                if not Transcript.from_event(event).text.startswith("audio "):
                    raise RuntimeError(f"unexpected transcript {event.data!r}")
                return took


def ours(endpoint: str, work: Path) -> subprocess.Popen:
    config = work / "plugin.json"
    config.write_text(json.dumps({"endpoint": endpoint, "lang": "en-US", "timeout": 30}))
    env = {**os.environ, "GOOGLE_STT_API_KEY": KEY}
    proc = subprocess.Popen([sys.executable, "-m", "ovos_stt_plugin_google_apikey.cli", "wyoming",
                             "--uri", "tcp://127.0.0.1:0", "--config", str(config)],
                            stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
    assert proc.stderr is not None
    for line in proc.stderr:
        found = re.search(r"serving Home Assistant on tcp://127\.0\.0\.1:(\d+)", line)
        if found:
            proc.port = int(found.group(1))     # type: ignore[attr-defined]
            return proc
    raise RuntimeError("ovos-google-stt wyoming did not start")


def bridge_venv() -> Optional[Path]:
    for venv in sorted(default_cache_dir().glob("wyoming-ovos-stt-0.2.0-*")):
        if (venv / ".ensure-venv-ok.json").is_file():
            return venv
    return None


def bridge(venv: Path, endpoint: str, work: Path) -> subprocess.Popen:
    xdg = work / "xdg"
    write_mycroft_conf(xdg, {"lang": "en-US", "stt": {"module": PLUGIN_ID, PLUGIN_ID: {
        "key": KEY, "endpoint": endpoint, "lang": "en-US", "timeout": 30}}})
    port = free_port()
    proc = start_process([venv_bin(venv), "-m", "wyoming_ovos_stt", "--plugin-name", PLUGIN_ID,
                          "--uri", f"tcp://127.0.0.1:{port}"], env=isolated_env(xdg),
                         log_path=work / "bridge.log")
    wait_port("127.0.0.1", port, 60, proc)
    proc.port = port                            # type: ignore[attr-defined]
    return proc


def run(quick: bool, seconds: float, reps: int, delay: float) -> Dict[str, Any]:
    uplinks = [20.0] if quick else [1.0, 5.0, 20.0]
    pcm = utterance(seconds)
    rows: List[Dict[str, Any]] = []
    venv = bridge_venv()
    with FakeGoogle(valid_keys=(KEY,), delay=delay) as fake, \
            tempfile.TemporaryDirectory() as tmp:
        servers = {"ovos-google-stt wyoming": ours(fake.endpoint, Path(tmp))}
        if venv is not None:
            servers["wyoming-ovos-stt 0.2.0"] = bridge(venv, fake.endpoint, Path(tmp))
        try:
            for proc in servers.values():        # each opens its connection to the fake once
                asyncio.run(home_assistant(proc.port, utterance(0.3), "en-US"))
            for mbit in uplinks:
                fake.read_rate_bps = mbit * 1e6 / 8
                times: Dict[str, List[float]] = {name: [] for name in servers}
                for _ in range(reps):             # interleaved: the same noise for both
                    for name, proc in servers.items():
                        times[name].append(asyncio.run(home_assistant(proc.port, pcm, "en-US")))
                row: Dict[str, Any] = {"uplink_mbit": mbit, "audio_s": seconds, "n": reps}
                for name, values in times.items():
                    row[name] = summarize(values)["p50"]
                    print(f"{mbit:4g} Mbit/s {name}: p50 {row[name]:.2f} s", file=sys.stderr)
                rows.append(row)
        finally:
            for proc in servers.values():
                stop_process(proc) if hasattr(proc, "log_path") else proc.terminate()
                proc.wait(10)
    return {"machine": machine(), "fake_delay_ms": delay * 1000, "servers": list(servers),
            "rows": rows}


def markdown(result: Dict[str, Any]) -> str:
    names = result["servers"]
    m = result["machine"]
    lines = [f"AudioStop to Transcript, median of {result['rows'][0]['n']} per cell; "
             f"{result['rows'][0]['audio_s']:g} s utterance fed in real time; fake recognition delay "
             f"{result['fake_delay_ms']:.0f} ms; {m['cpu_model']}, {m['cores']} cores, load "
             f"{m.get('loadavg_at_start', '?')}, Python {m['python']}.", "",
             "| uplink | " + " | ".join(names) + (" | ratio |" if len(names) > 1 else ""),
             "|---|" + "---|" * (len(names) + (len(names) > 1))]
    for r in result["rows"]:
        cells = [f"{r[n]:.2f} s" for n in names]
        if len(names) > 1:
            cells.append(f"{r[names[1]] / r[names[0]]:.1f}x")
        lines.append(f"| {r['uplink_mbit']:g} Mbit/s | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="20 Mbit/s only, one run")
    parser.add_argument("--seconds", type=float, default=4.0, help="utterance length (s)")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--delay", type=float, default=0.2, help="the fake's recognition delay (s)")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    result = run(args.quick, args.seconds, 1 if args.quick else args.reps, args.delay)
    args.out.mkdir(parents=True, exist_ok=True)
    name = "wyoming-quick" if args.quick else "wyoming"
    (args.out / f"{name}.json").write_text(json.dumps(result, indent=2))
    table = markdown(result)
    (args.out / f"{name}.md").write_text(table + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
