"""Against the real Google API: skipped unless GOOGLE_STT_API_KEY holds a real key."""
from __future__ import annotations

import shutil
import subprocess

import pytest

from conftest import LIVE_KEY
from ovos_stt_plugin_google_apikey.plugin import GoogleAPIKeySTT

pytestmark = [pytest.mark.live,
              pytest.mark.skipif(not LIVE_KEY, reason="set GOOGLE_STT_API_KEY to a real key to run")]


@pytest.fixture(scope="module")
def engine():
    engine = GoogleAPIKeySTT({"key": LIVE_KEY, "lang": "en-US", "timeout": 15})
    yield engine
    engine.shutdown()


def test_the_key_is_accepted(engine):
    # Half a second of silence: Google answers "no speech", which proves key and project work.
    assert engine.transcribe(bytes(16000)) == []


@pytest.mark.skipif(not shutil.which("espeak-ng"), reason="needs espeak-ng to speak")
def test_real_speech(engine, tmp_path):
    wav = tmp_path / "hello.wav"
    subprocess.run(["espeak-ng", "-w", str(wav), "turn on the kitchen lights"], check=True)
    text = engine.execute(wav.read_bytes()).lower()
    assert "kitchen" in text and "light" in text
