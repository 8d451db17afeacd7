"""CI smoke run of bench/floods.py at a small size (200 idle connections from 2 processes for 10 s):
every figure is there, the server closed every silent connection at its 5 s header deadline, the
fresh client was answered throughout, and the server logged nothing but its request lines. Latencies are not judged: speed belongs to the benchmark, not to a test."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow      # a benchmark at a small size: tens of seconds

ROOT = Path(__file__).resolve().parent.parent


def test_floods_benchmark_runs_and_reports_every_figure(tmp_path):
    pytest.importorskip("fastapi")
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "floods.py"), "--connections", "200",
                           "--seconds", "10", "--flooders", "2", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "floods.json").read_text())
    flood = result["flood"]
    # every connection opened, and each was closed by the server's 5 s header deadline within the 10 s
    assert flood["opened"] == 200 and flood["failed_to_open"] == 0, flood
    assert flood["closed_by_server"] == 200 and flood["held_at_end"] == 0, flood
    for phase in ("before", "during"):
        row = result[phase]
        assert row["probes"] >= 1 and set(row["outcomes"]) == {"200"}, row
        assert math.isfinite(row["p50_s"]) and row["max_s"] >= row["p50_s"]
    assert result["other_log_lines_during"] == 0, result["other_log_lines_first"]
    assert "| fresh client, p50 |" in (tmp_path / "floods.md").read_text()
