"""CI smoke run of bench/wyoming_latency.py at its smallest size: it runs and produces every figure."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow      # a benchmark at its smallest size: tens of seconds

REPO = Path(__file__).resolve().parent.parent
pytest.importorskip("wyoming")


def test_wyoming_benchmark_runs_and_reports_every_figure(tmp_path):
    out = subprocess.run([sys.executable, str(REPO / "bench" / "wyoming_latency.py"), "--quick",
                          "--seconds", "1", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads((tmp_path / "wyoming-quick.json").read_text())
    assert result["servers"][0] == "ovos-google-stt wyoming"
    [row] = result["rows"]
    assert row["uplink_mbit"] == 20.0
    assert all(math.isfinite(row[name]) and row[name] > 0 for name in result["servers"])
    assert "| uplink | ovos-google-stt wyoming" in (tmp_path / "wyoming-quick.md").read_text()
