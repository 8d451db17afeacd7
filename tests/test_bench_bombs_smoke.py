"""bench/bombs.py at its smallest size runs and produces every figure (values are not judged,
but the refusals and "nothing sent to Google" are behaviour, so they are)."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow      # a benchmark at its smallest size: tens of seconds

ROOT = Path(__file__).resolve().parent.parent
FIGURES = ("seconds", "start_rss_mib", "peak_rss_mib", "extra_mib", "google_requests", "google_bytes", "body_bytes")


def test_bombs_tiny_run(tmp_path):
    pytest.importorskip("fastapi")
    pytest.importorskip("soundfile")
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "bombs.py"), "--tiny", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((tmp_path / "bombs.json").read_text())
    rows = results["after"]["rows"]
    assert [row["at_once"] for row in rows] == [1, 1, 1, 1, 4]
    for row in rows:
        assert all(isinstance(row[key], (int, float)) and math.isfinite(row[key]) for key in FIGURES), row
        assert row["status"] == [400 if "JUNK" in row["bomb"] else 413] * row["at_once"], row
        assert (row["google_requests"], row["google_bytes"]) == (0, 0)
    table = (tmp_path / "bombs.md").read_text()
    assert table.strip() in done.stdout and table.count("| after (") == len(rows)
