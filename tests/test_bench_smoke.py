"""bench/run.py at its smallest size produces every figure and the plot (values are not judged)."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow      # a benchmark at its smallest size: tens of seconds

ROOT = Path(__file__).resolve().parent.parent
SECTIONS = {
    "overhead": ("rows", ("plugin_ms", "baseline_ms", "encode_ms", "ratio_p50", "net_ms_p50")),
    "server": ("levels", ("rps", "ideal_rps", "rps_vs_ideal", "added_latency_ms", "baseline_added_latency_ms")),
    "long_audio": ("rows", ("wall_s", "speedup", "fraction_of_1", "requests")),
    "upload": ("rows", ("body_bytes_per_s", "audio_bytes_per_s", "vs_linear16")),
}


def _numbers(value, path="$"):
    if isinstance(value, bool):
        return
    if isinstance(value, (int, float)):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _numbers(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _numbers(item, f"{path}[{index}]")


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    pytest.importorskip("fastapi")
    pytest.importorskip("soundfile")
    out = tmp_path_factory.mktemp("bench")
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "run.py"), "--tiny", "--out", str(out)],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    return out, json.loads((out / "results.json").read_text()), done.stdout


def test_every_figure_is_there(bench):
    _, results, _ = bench
    machine = results["machine"]
    assert machine["cpu_model"] and machine["cores"] >= 1 and machine["python"]
    for section, (list_key, keys) in SECTIONS.items():
        rows = results[section][list_key]
        assert rows, section
        for row in rows:
            assert all(key in row for key in keys), (section, row)
    encodings = {(r["encoding"], r["seconds"]) for r in results["overhead"]["rows"]}
    assert encodings == {(e, s) for e in ("linear16", "flac", "ogg_opus") for s in (2, 5, 15)}
    assert [lv["clients"] for lv in results["server"]["levels"]] == [1, 8, 32, 64]
    for level in results["server"]["levels"]:
        assert {"p50", "p95", "p99"} <= set(level["added_latency_ms"])
    assert len(results["server"]["rss"]) == 3
    assert all({"vmhwm_kib", "vmrss_kib"} <= set(r) for r in results["server"]["rss"])
    assert [r["max_workers"] for r in results["long_audio"]["rows"]] == [1, 2, 4, 8]
    assert {"sequential", "concurrent", "pool_size"} <= set(results["connections"])
    assert results["targets"] and all(t["status"] in ("PASS", "MISS") for t in results["targets"])


def test_every_number_is_finite(bench):
    _, results, _ = bench
    numbers = list(_numbers(results))
    assert len(numbers) > 100
    bad = [(path, value) for path, value in numbers if not math.isfinite(value)]
    assert not bad
    # _finite() writes NaN as null: a null figure is a missing figure.
    assert "null" not in json.dumps({k: v for k, v in results.items() if k not in ("plot",)})


def test_markdown_and_plot(bench):
    out, results, stdout = bench
    table = (out / "results.md").read_text()
    assert table.strip() in stdout and "| target |" in table
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert results["plot"] is None and "matplotlib" in results["plot_skipped"]
        return
    png = out / "results.png"
    assert results["plot"] == "results.png" and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
