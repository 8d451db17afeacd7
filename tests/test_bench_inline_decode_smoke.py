"""bench/inline_decode.py at its smallest size: a row per WAV format, every figure a number."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_it_times_every_format_and_the_hop():
    pytest.importorskip("fastapi")
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "inline_decode.py"), "--runs", "3"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert re.search(r"one hop to a worker thread and back: \d+\.\d{3} ms", out.stdout)
    rows = re.findall(r"^\| (\d+) Hz, (\d) ch, (\d+)-bit \| [\d.]+ \| (\d+\.\d{3}) ms \| (\d+\.\d\d)x \|$",
                      out.stdout, re.M)
    assert [r[:3] for r in rows] == [("16000", "1", "16"), ("44100", "2", "16"), ("48000", "1", "32"),
                                     ("8000", "1", "8")]
