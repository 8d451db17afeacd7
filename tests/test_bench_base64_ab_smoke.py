"""bench/base64_ab.py at its smallest size: both servers answer, every figure is a number, and
the server run without pybase64 really runs without it."""
from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow      # two servers under load: tens of seconds

ROOT = Path(__file__).resolve().parent.parent


def test_both_servers_are_measured(tmp_path):
    pytest.importorskip("fastapi")
    pytest.importorskip("pybase64")
    # Two rounds: each arm goes first once. The bench itself stops (exit 1) when the server
    # meant to lack pybase64 has its extension mapped, or the other one has not.
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "base64_ab.py"), "--rounds", "2",
                          "--requests", "64", "--out", str(tmp_path)], capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr
    rows = re.findall(r"^\| ([^|]+) \| (\d+\.\d\d) \| (\d+\.\d\d) \| (\d+\.\d{3}) \|$", out.stdout, re.M)
    assert [r[0] for r in rows] == ["server CPU per request at 32 clients, ms", "requests/s at 32 clients",
                                    "p50 latency at 1 client, ms"]
    assert (tmp_path / "base64-ab.md").read_text() == out.stdout.rstrip("\n") + "\n"
    result = json.loads((tmp_path / "base64-ab.json").read_text())
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True).stdout.strip() or "unknown"
    assert result["machine"]["cores"] and result["commit"] == head
    assert [r["failures"] for rows in result["samples"].values() for r in rows] == [0, 0, 0, 0]


def test_the_hiding_sitecustomize_hides_pybase64(tmp_path):
    pytest.importorskip("pybase64")         # without it, hidden or not, the probe says "base64"
    # the bench's HIDE, read without importing the bench (importing it isolates this process)
    tree = ast.parse((ROOT / "bench" / "base64_ab.py").read_text(encoding="utf-8"))
    HIDE = next(ast.literal_eval(node.value) for node in tree.body if isinstance(node, ast.Assign)
                and getattr(node.targets[0], "id", "") == "HIDE")
    (tmp_path / "sitecustomize.py").write_text(HIDE, encoding="utf-8")
    probe = "from ovos_stt_plugin_google_apikey import wire; print(wire.b64encode.__module__)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60,
                         env={"PYTHONPATH": f"{tmp_path}:{ROOT}", "PATH": "/usr/bin:/bin"})
    assert out.stdout.strip() == "base64", out.stderr
