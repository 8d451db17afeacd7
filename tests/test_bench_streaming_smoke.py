"""CI smoke run of bench/streaming.py at its smallest size: it runs and produces every figure."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow      # a benchmark at its smallest size: tens of seconds

REPO = Path(__file__).resolve().parent.parent


def test_streaming_benchmark_runs_and_reports_every_figure(tmp_path):
    out = subprocess.run([sys.executable, str(REPO / "bench" / "streaming.py"), "--quick", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads((tmp_path / "streaming-quick.json").read_text())
    combos = {(r["plugin"], r["connection"]) for r in result["rows"]}
    assert combos == {("one-shot", "cold"), ("one-shot", "warm"), ("streaming", "cold"), ("streaming", "warm")}
    for row in result["rows"]:
        assert all(math.isfinite(row[k]) for k in ("p50_ms", "max_ms", "over_delay_p50_ms"))
        assert row["p50_ms"] > 0
    assert isinstance(result["target"]["pass"], bool)
    assert "| uplink | utterance |" in (tmp_path / "streaming-quick.md").read_text()
