"""CI smoke run of bench/uplink.py at its smallest size: it runs and produces every figure."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow      # a benchmark at its smallest size: tens of seconds

REPO = Path(__file__).resolve().parent.parent


def test_uplink_benchmark_runs_and_reports_every_figure(tmp_path):
    out = subprocess.run([sys.executable, str(REPO / "bench" / "uplink.py"), "--quick", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads((tmp_path / "uplink-quick.json").read_text())
    assert [(r["uplink_mbit"], r["audio_s"]) for r in result["rows"]] == [(20.0, 5.0)]
    for row in result["rows"]:
        assert all(math.isfinite(row[k]) and row[k] > 0
                   for k in ("plugin_p50_s", "baseline_p50_s", "ratio_p50", "body_bytes", "upload_s_at_rate"))
        assert isinstance(row["over_timeout"], bool)
    assert "| uplink | audio | body |" in (tmp_path / "uplink-quick.md").read_text()
