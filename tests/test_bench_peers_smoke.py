"""CI smoke run of bench/peers.py at its smallest size, without the optional peers (the seed
bridge lives outside this repository; the launcher's venv comes from PyPI): every figure of this
server and of the no-bridge baseline is there and finite. Values are not judged: speed belongs
to the benchmark, not to a test."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow      # a benchmark at its smallest size: tens of seconds

ROOT = Path(__file__).resolve().parent.parent


def test_peers_benchmark_runs_and_reports_every_figure(tmp_path):
    pytest.importorskip("fastapi")
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "peers.py"), "--rounds", "1", "--clients", "2",
                           "--requests", "6", "--single", "3", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "peers.json").read_text())
    ours = result["summary"]["server"]
    assert set(result["samples"]) == {"server", "bare"}
    assert ours["failures"] == 0
    for key in ("rps", "cpu_ms_per_request", "loop_cpu_ms_per_request", "added_ms_1_client"):
        assert math.isfinite(ours[key]), (key, ours)
    assert ours["rps"] > 0 and ours["cpu_ms_per_request"] > 0       # a real process was measured
    assert math.isfinite(result["summary"]["throughput_vs_bare"])
    table = (tmp_path / "peers.md").read_text()
    assert "| | this server | clients straight to the fake |" in table and "seed bridge" not in table
