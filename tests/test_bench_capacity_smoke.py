"""CI smoke run of bench/capacity.py at its smallest size: every figure is there and finite
(values are not judged: speed belongs to the benchmark, not to a test)."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow      # a benchmark at its smallest size: tens of seconds

ROOT = Path(__file__).resolve().parent.parent
FIGURES = ("rps", "baseline_rps", "rps_vs_baseline", "peak_rss_mib", "idle_rss_mib",
           "rss_per_request_in_flight_kib", "server_cpu_ms_per_request")


def test_capacity_benchmark_runs_and_reports_every_figure(tmp_path):
    pytest.importorskip("fastapi")
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "capacity.py"), "--tiny", "--delay", "0.05",
                           "--out", str(tmp_path)], capture_output=True, text=True, timeout=180, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "capacity-tiny.json").read_text())
    assert [r["clients"] for r in result["rows"]] == [8]
    for row in result["rows"]:
        assert all(math.isfinite(row[k]) for k in FIGURES), row
        assert row["failures"] == 0 and row["requests"] >= 4
        assert {"p50", "p99"} <= set(row["added_ms"]) and {"p50", "p99"} <= set(row["baseline_added_ms"])
        assert row["peak_rss_mib"] >= row["idle_rss_mib"] > 10          # a real process was measured
    assert [r["silent_uploads"] for r in result["silent"]] == [0, 64]
    assert all(math.isfinite(r["added_ms"]["p50"]) and r["failures"] == 0 for r in result["silent"])
    assert "| clients | req/s |" in (tmp_path / "capacity-tiny.md").read_text()
    if result["plot_skipped"] is None:
        assert (tmp_path / "capacity-tiny.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
