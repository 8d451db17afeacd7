"""OVOS's own Wyoming bridge, wyoming-ovos-stt 0.2.0 from PyPI in its own venv, loading this
plugin through OPM, driven by the wyoming package's client with Home Assistant's sequence."""
from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

pytest.importorskip("wyoming")

from audio_samples import tone  # noqa: E402
from conftest import KEY, PLUGIN_ID  # noqa: E402
from venvs import (  # noqa: E402
    ensure_venv,
    free_port,
    isolated_env,
    pip_install,
    start_process,
    stop_process,
    venv_bin,
    wait_port,
    write_mycroft_conf,
)
from wyoming.asr import Transcribe, Transcript  # noqa: E402
from wyoming.audio import AudioChunk, AudioStart, AudioStop  # noqa: E402
from wyoming.client import AsyncTcpClient  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.compat
WYOMING_OVOS_STT = [["wyoming-ovos-stt==0.2.0", str(REPO)]]   # the plugin's own dependencies too


@pytest.fixture(scope="module")
def venv():
    venv = ensure_venv("wyoming-ovos-stt-0.2.0", WYOMING_OVOS_STT)
    pip_install(venv, "--no-deps", "--force-reinstall", str(REPO))    # the code under test
    return venv


def bridge(venv, tmp_path, section):
    """`python -m wyoming_ovos_stt --plugin-name <ours>`, as its README runs it."""
    xdg = tmp_path / "xdg"
    write_mycroft_conf(xdg, {"lang": "en-US", "stt": {"module": PLUGIN_ID, PLUGIN_ID: section}})
    port = free_port()
    proc = start_process([venv_bin(venv), "-m", "wyoming_ovos_stt", "--plugin-name", PLUGIN_ID,
                          "--uri", f"tcp://127.0.0.1:{port}"], env=isolated_env(xdg),
                         log_path=tmp_path / "wyoming-ovos-stt.log")
    wait_port("127.0.0.1", port, 60, proc)
    return proc, port


async def home_assistant(port, pcm, language):
    async with AsyncTcpClient("127.0.0.1", port) as client:
        await client.write_event(Transcribe(language=language).event())
        await client.write_event(AudioStart(rate=16000, width=2, channels=1).event())
        for i in range(0, len(pcm), 2048):
            await client.write_event(AudioChunk(rate=16000, width=2, channels=1,
                                                audio=pcm[i:i + 2048]).event())
        await client.write_event(AudioStop().event())
        while True:
            event = await asyncio.wait_for(client.read_event(), 60)
            if event is None or Transcript.is_type(event.type):
                return event


def test_the_bridge_loads_this_plugin_and_transcribes(venv, fake, tmp_path):
    proc, port = bridge(venv, tmp_path, {"key": KEY, "endpoint": fake.endpoint, "lang": "en-US"})
    try:
        event = asyncio.run(home_assistant(port, tone(1.0), "en-US"))
    finally:
        stop_process(proc)
    assert event is not None, Path(proc.log_path).read_text()[-3000:]
    assert Transcript.from_event(event).text == "audio 1.00 seconds at 16000 hertz"
    assert fake.requests[-1].headers["X-Goog-Api-Key"] == KEY


def test_the_bridge_with_a_configured_lang_auto(venv, fake, tmp_path):
    # The bridge calls execute(audio) with no language: the configured "auto" must pick one of
    # auto_languages (needs the one-request-path change to the plugin's language resolution).
    section = {"key": KEY, "endpoint": fake.endpoint, "lang": "auto",
               "auto_languages": ["pt-PT", "en-US"]}
    proc, port = bridge(venv, tmp_path, section)
    try:
        event = asyncio.run(home_assistant(port, tone(1.0), "pt-PT"))
    finally:
        stop_process(proc)
    assert event is not None, Path(proc.log_path).read_text()[-3000:]
    assert Transcript.from_event(event).text == "audio 1.00 seconds at 16000 hertz"
    sent = [r.json["config"] for r in fake.requests if r.json]
    assert {c["languageCode"] for c in sent} <= {"pt-PT", "en-US"}
