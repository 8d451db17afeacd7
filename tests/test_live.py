"""Against the real Google API: runs only when asked for with GOOGLE_STT_LIVE_TEST=1 (and
GOOGLE_STT_API_KEY holding a real key). A key exported for everyday use is not enough: the
ordinary test command must pass whatever the environment holds."""
from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from conftest import LIVE_KEY

from ovos_stt_plugin_google_apikey.plugin import GoogleAPIKeySTT

LIVE_OPT_IN = "GOOGLE_STT_LIVE_TEST"
ASKED = os.environ.get(LIVE_OPT_IN) == "1"

pytestmark = [pytest.mark.live,
              pytest.mark.skipif(not ASKED, reason=f"live test not asked for: set {LIVE_OPT_IN}=1"),
              pytest.mark.skipif(ASKED and not LIVE_KEY,
                                 reason=f"{LIVE_OPT_IN}=1 needs GOOGLE_STT_API_KEY set to a real key")]


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
