"""bench/stages.py at its smallest size: every stage timed for every request at both client
counts (so the wrapped server methods still exist and still run), every figure a number."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow      # an instrumented server under load, then the burner rounds

ROOT = Path(__file__).resolve().parent.parent
STAGE_ROWS = ["reading and admitting the body", "decoding, to the hand-off", "waiting for the worker thread",
              "the worker, before the Google call", "the Google call", "the worker, after it",
              "waiting for the event loop", "answering (sending, releasing, logging)"]


def test_every_stage_is_timed(tmp_path):
    pytest.importorskip("fastapi")
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "stages.py"), "--requests", "64",
                          "--single", "5", "--rounds", "2", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    rows = re.findall(r"^\| ([^|]+) \| (\d+\.\d\d) / (\d+\.\d\d) \| (\d+\.\d\d) / (\d+\.\d\d) \|$", out.stdout, re.M)
    assert [r[0] for r in rows] == STAGE_ROWS
    result = json.loads((tmp_path / "stages.json").read_text())
    many, one = result["clients"]["32"], result["clients"]["1"]
    # Each request of the measured runs (64 and 5, plus each client's first, unmeasured one),
    # no warm-up request, had all nine timestamps taken; none failed.
    assert (many["requests_seen"], one["requests_seen"]) == (64 + 32, 5 + 1)
    assert (many["requests_timed"], one["requests_timed"]) == (64 + 32, 5 + 1)
    assert many["failures"] == one["failures"] == 0
    # the fake answers in 150 ms: the Google call holds it, the client waited for all of it
    assert 150 <= many["stages_ms"]["the Google call"]["p50"] <= many["client_p50_ms"]
    assert len(result["burner"]["alone"]) == len(result["burner"]["with the burner"]) == 2
    assert re.search(r"alone \d+\.\d \(p50 \d+\.\d ms\), with a process burning 45 % of a core \d+\.\d\.",
                     out.stdout)
