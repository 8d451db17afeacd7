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
    assert ours["rps"] > 0          # its CPU is counted in 10 ms ticks: 6 requests may take none
    assert math.isfinite(result["summary"]["throughput_vs_bare"])
    table = (tmp_path / "peers.md").read_text()
    assert "| | this server | clients straight to the fake |" in table and "seed bridge" not in table


def test_the_floors_are_measured_beside_this_server(tmp_path):
    pytest.importorskip("fastapi")
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "peers.py"), "--floors", "--rounds", "2",
                           "--clients", "2", "--requests", "6", "--single", "3", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "peers.json").read_text())
    assert set(result["samples"]) == {"server", "floor-threads", "floor-asyncio", "bare"}
    for floor in ("floor-threads", "floor-asyncio"):
        figures = result["summary"][floor]
        assert figures["failures"] == 0 and figures["rps"] > 0
        assert math.isfinite(figures["cpu_ms_per_request"])       # 10 ms ticks: may be 0 at this size
        assert math.isfinite(result["summary"][f"{floor}_throughput_vs_bare"])
    table = (tmp_path / "peers.md").read_text()
    assert "floor: Google call on a thread | floor: Google call on the loop |" in table


@pytest.fixture()
def bench_modules(monkeypatch):
    pytest.importorskip("fastapi")
    monkeypatch.syspath_prepend(str(ROOT / "bench"))      # undone after the test
    from capacity import Served
    from peers import Peer
    return Peer, Served


@pytest.mark.parametrize("kind", ["threads", "asyncio"])
def test_a_floor_forwards_to_google_and_answers_what_this_server_answers(kind, bench_modules):
    """A floor that answered without calling Google would measure nothing: each floor must ask
    the fake once per clip and answer the transcript of that clip's length, as this server
    does; when Google refuses, it must say so (502), not answer an empty 200."""
    import requests
    from audio_samples import tone
    from fake_google import FakeGoogle, Fault

    from ovos_stt_plugin_google_apikey import audio

    Peer, Served = bench_modules
    with FakeGoogle(valid_keys=["bench-key"]) as fake:
        for start in (lambda: Peer("", fake.endpoint, floor=kind), lambda: Served(fake.endpoint, 1)):
            bridge = start()
            try:
                for seconds in (0.5, 1.25):
                    asked = len(fake.requests)
                    answer = requests.post(bridge.url + "/stt?lang=en-US", data=audio.to_wav(audio.PCM(tone(seconds), 16000, 2)),
                                           headers={"Content-Type": "audio/wav"}, timeout=30)
                    assert (answer.status_code, answer.text.strip()) == (
                        200, f"audio {seconds:.2f} seconds at 16000 hertz"), bridge.url
                    assert len(fake.requests) == asked + 1
                fake.script(Fault.http(403))
                refused = requests.post(bridge.url + "/stt?lang=en-US", data=audio.to_wav(audio.PCM(tone(0.5), 16000, 2)),
                                        headers={"Content-Type": "audio/wav"}, timeout=30)
                assert refused.status_code >= 400 and "audio" not in refused.text
            finally:
                bridge.close()
