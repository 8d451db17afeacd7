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
        assert figures["failures"] == 0 and figures["rps"] > 0 and figures["cpu_ms_per_request"] > 0
        assert math.isfinite(result["summary"][f"{floor}_throughput_vs_bare"])
    table = (tmp_path / "peers.md").read_text()
    assert "floor: Google call on a thread | floor: Google call on the loop |" in table


@pytest.mark.parametrize("kind", ["threads", "asyncio"])
def test_a_floor_forwards_to_google_and_answers_what_this_server_answers(kind):
    """A floor that answered without calling Google would measure nothing: its transcript of a
    clip must be this server's, from the same fake, and the fake must have been asked."""
    pytest.importorskip("fastapi")
    sys.path[:0] = [str(ROOT / "bench")]
    try:
        import requests
        from capacity import Served
        from load import Child
        from peers import Peer
        from speechlike import RATE, speech_like

        from ovos_stt_plugin_google_apikey import audio
    finally:
        del sys.path[0]
    wav = audio.to_wav(audio.PCM(speech_like(1.0, seed=3), RATE, 2))
    fake = Child("fake", "--delay", "0")
    try:
        texts = []
        for bridge in (Peer("", fake.first_line[0], floor=kind), Served(fake.first_line[0], 1)):
            try:
                answer = requests.post(bridge.url + "/stt?lang=en-US", data=wav,
                                       headers={"Content-Type": "audio/wav"}, timeout=30)
                assert answer.status_code == 200, answer.text
                texts.append(answer.text.strip())
            finally:
                bridge.close()
    finally:
        fake.close()
    assert texts[0] and texts[0] == texts[1]
