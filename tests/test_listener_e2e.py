"""End to end: the real OVOS listener service (ovos-dinkum-listener) transcribing with this plugin.

ovos-messagebus and ovos-dinkum-listener run as processes from a venv built once under .venvs/
(with this package reinstalled every session), configured only by a mycroft.conf in a temporary
XDG_CONFIG_HOME. Test-only plugins from tests/shims/ovos-e2e-shims stand in for the hardware: a
microphone that plays WAVs made here in real time, and a wake word that never fires (the listener
is woken push-to-talk with ``mycroft.mic.listen``). Voice activity detection is the released
ovos-vad-plugin-noise. The listener's STT talks to the fake Google on loopback, which "recognises"
each phrase by its tone; the test asserts the text the listener emits on
``recognizer_loop:utterance`` and what reached Google.
"""
from __future__ import annotations

import json
import math
import socket
import subprocess
import threading
import time
from array import array
from pathlib import Path
from typing import NamedTuple

import pytest
from audio_samples import peak_frequency16, silence, tone, wav
from conftest import PLUGIN_ID
from venvs import (
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

pytestmark = [pytest.mark.compat, pytest.mark.e2e]

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SHIMS = HERE / "shims" / "ovos-e2e-shims"
DRIVER = HERE / "shims" / "bus_driver.py"
STREAMING_ID = PLUGIN_ID + "-streaming"

# The versions the issue found working, and the OVOS libraries they resolved to, pinned so a new
# release cannot change the test under us. ovos-vad-plugin-noise pins plugin-manager < 2 but
# works with 2.2, so it goes in without its dependencies; on Python 3.13 it and this package
# (also installed --no-deps) import audioop, from audioop-lts.
LISTENER_VENV = [
    ["ovos-dinkum-listener==0.5.0", "ovos-messagebus==0.0.10", "ovos-plugin-manager==2.2.0",
     "ovos-bus-client==1.5.0", "ovos-config==1.2.2", "ovos-utils==0.8.5", "SpeechRecognition==3.17.0",
     "audioop-lts; python_version>='3.13'"],
    ["--no-deps", "ovos-vad-plugin-noise==0.1.2"],
    ["setuptools>=61", "wheel"],       # builds the code under test each session, no isolated env
]

KEY = "e2e-listener-key"             # what the fake takes; never expected in a log
REVOKED_KEY = "e2e-revoked-key"      # the fake answers it 403 SERVICE_DISABLED, as Google does
RATE = 16000
TONE_SECONDS = 1.2
# Tones stand in for speech: the fake Google below hears each frequency as one phrase.
PHRASES = {500: "what time is it", 700: "turn on the kitchen lights", 900: "set a timer for ten minutes"}
LOUD_RMS = 1000                      # the fake's own silence cut is 100; the tones are ~9800
FRAME = RATE // 100                  # 10 ms


class Bus(NamedTuple):
    host: str
    port: int
    log_path: Path


class PhraseRecognizer:
    """A FakeGoogle recognizer: the dominant tone of the loud part of the audio names the phrase.

    Records every recognition with speech as (phrase, seconds of tone), so a test can check the
    whole utterance arrived; audio without speech gets Google's empty answer.
    """

    def __init__(self) -> None:
        self.heard: list[tuple[str, float]] = []
        self._lock = threading.Lock()

    def __call__(self, req: dict, audio) -> dict:
        if audio.pcm is None:
            raise ValueError(f"the fake cannot decode {audio.encoding}")
        samples = array("h", audio.pcm)
        loud = [i for i in range(0, len(samples) - FRAME + 1, FRAME)
                if math.sqrt(sum(s * s for s in samples[i:i + FRAME]) / FRAME) > LOUD_RMS]
        if not loud:
            return {}
        span = samples[loud[0]:loud[-1] + FRAME]
        frequency = peak_frequency16(span.tobytes(), audio.sample_rate)
        phrase = next((text for hz, text in PHRASES.items() if abs(frequency - hz) < hz * 0.05),
                      f"unknown tone of {frequency:.0f} hertz")
        with self._lock:
            self.heard.append((phrase, len(span) / audio.sample_rate))
        return {"results": [{"alternatives": [{"transcript": phrase, "confidence": 0.92}],
                             "languageCode": req["config"]["languageCode"].lower()}]}


def spoken(hz: int) -> bytes:
    """One utterance as a microphone hears it: a pause, the phrase's tone, then a long pause."""
    speech = tone(TONE_SECONDS, RATE, freq=hz, amplitude=0.3)
    return wav(silence(0.4, RATE) + speech + silence(1.6, RATE), RATE)


@pytest.fixture(scope="module")
def listener_venv():
    venv = ensure_venv("listener-e2e", LISTENER_VENV)
    pip_install(venv, "--no-deps", "--force-reinstall", "--no-build-isolation", str(REPO), str(SHIMS))
    return venv


@pytest.fixture(scope="module")
def bus(listener_venv, tmp_path_factory):
    """ovos-messagebus on a free loopback port."""
    root = tmp_path_factory.mktemp("bus")
    host, port = "127.0.0.1", free_port()
    write_mycroft_conf(root / "xdg", {"websocket": _websocket(host, port)})
    proc = start_process([venv_bin(listener_venv, "ovos-messagebus")], env=isolated_env(root / "xdg"),
                         log_path=root / "messagebus.log")
    try:
        wait_port(host, port, 60, proc)
        yield Bus(host, port, proc.log_path)
    finally:
        stop_process(proc)


def _websocket(host: str, port: int) -> dict:
    return {"host": host, "port": port, "route": "/core", "ssl": False}


def listener_conf(bus: Bus, mic_folder: Path, stt: dict) -> dict:
    """mycroft.conf for a headless listener: test microphone, push-to-talk, noise VAD, ``stt``."""
    return {
        "lang": "en-US",
        "websocket": _websocket(bus.host, bus.port),
        "confirm_listening": False,
        "listener": {
            "microphone": {"module": "ovos-microphone-plugin-e2e-wav",
                           "ovos-microphone-plugin-e2e-wav": {"folder": str(mic_folder)}},
            # threshold: digital silence has no energy, so the ratio methods never see an end
            "VAD": {"module": "ovos-vad-plugin-noise",
                    "ovos-vad-plugin-noise": {"method": "threshold", "energy_threshold": 1000}},
            "wake_word": "e2e_never", "stand_up_word": "e2e_never_wake_up",
            "fake_barge_in": False,
            # generous: the clock runs from record_begin, and a loaded machine may be slow to
            # drop the WAV in; the silence after each tone ends the recording long before
            "recording_timeout_with_silence": 15, "recording_timeout": 30,
            # continuous mode drops the first word; save_utterances crashes on an empty
            # transcript: both the listener's issues, so both stay off (their defaults)
            "continuous_listen": False, "hybrid_listen": False, "save_utterances": False,
        },
        "hotwords": {"e2e_never": {"module": "ovos-ww-plugin-e2e-never", "listen": True, "active": True},
                     "hey_mycroft": {"active": False}, "wake_up": {"active": False}},
        "stt": stt,
    }


def run_listener(venv, bus, tmp_path, stt: dict, tones) -> tuple[list[dict], str]:
    """Start the listener with ``stt``, speak one WAV per tone; the driver's results and the log."""
    mic_folder, xdg = tmp_path / "mic", tmp_path / "xdg"
    write_mycroft_conf(xdg, listener_conf(bus, mic_folder, stt))
    env = isolated_env(xdg)
    wavs = []
    for n, hz in enumerate(tones):
        path = tmp_path / f"utterance-{n}.wav"
        path.write_bytes(spoken(hz))
        wavs.append(str(path))
    log_path = tmp_path / "listener.log"
    driver_log = tmp_path / "driver.log"
    processes = [start_process([venv_bin(venv, "ovos-dinkum-listener")], env=env, log_path=log_path)]
    try:
        processes.append(start_process([venv_bin(venv), DRIVER, bus.host, bus.port, mic_folder, *wavs],
                                       env=env, log_path=driver_log))
        outcome = _wait_for(driver=processes[1], listener=processes[0], deadline=time.monotonic() + 300)
    finally:
        for proc in reversed(processes):
            stop_process(proc)
    log = log_path.read_text(errors="replace")
    output = driver_log.read_text(errors="replace")
    results = [json.loads(line) for line in output.splitlines() if line.startswith('{"type": "result"')]
    if outcome or len(results) != len(wavs):
        pytest.fail(f"the bus driver failed ({outcome or 'no result for each WAV'}):\n{output[-3000:]}"
                    f"\n--- listener log ---\n{log[-12000:]}"
                    f"\n--- messagebus log ---\n{bus.log_path.read_text(errors='replace')[-3000:]}")
    return results, log


def _wait_for(driver, listener, deadline: float) -> str:
    """Wait for the driver to finish; "" when it succeeded, else what went wrong."""
    while time.monotonic() < deadline:
        try:
            code = driver.wait(timeout=0.5)
            return f"driver exited with {code}" if code else ""
        except subprocess.TimeoutExpired:
            if listener.poll() is not None:
                return f"the listener exited with {listener.returncode}"
    return "timed out"


def utterances(results: list[dict]) -> list:
    return [r["data"].get("utterances") if r["event"] == "recognizer_loop:utterance" else r["event"]
            for r in results]


def assert_transcribed_whole(results: list[dict], log: str, google, tones: list[int]) -> None:
    """Each phrase came out on recognizer_loop:utterance, and reached Google whole and once:
    no chunk lost at either end of the tone, none sent twice."""
    context = f"\n--- listener log ---\n{log[-12000:]}"
    assert utterances(results) == [[PHRASES[hz]] for hz in tones], context
    heard = google.recognizer.heard
    assert [phrase for phrase, _ in heard] == [PHRASES[hz] for hz in tones], context
    assert all(abs(seconds - TONE_SECONDS) <= 0.03 for _, seconds in heard), heard


def section(endpoint: str, key: str = KEY) -> dict:
    return {"key": key, "endpoint": endpoint, "timeout": 20}


@pytest.fixture
def google(fake):
    """The fake Google hearing phrases; the listener's key valid, REVOKED_KEY refused."""
    fake.recognizer = PhraseRecognizer()
    fake.valid_keys.update({KEY, REVOKED_KEY})
    fake.key_errors[REVOKED_KEY] = "disabled"
    return fake


def speech_requests(fake) -> list:
    """The recognize calls that reached the fake (not a HEAD warming the connection)."""
    return [r for r in fake.requests if r.method == "POST" and r.path.endswith("speech:recognize")]


@pytest.mark.parametrize("module", [PLUGIN_ID, STREAMING_ID])
def test_listener_transcribes_each_utterance_with_the_plugin_as_stt_module(
        listener_venv, bus, google, tmp_path, module):
    tones = list(PHRASES)
    results, log = run_listener(listener_venv, bus, tmp_path,
                                {"module": module, module: section(google.endpoint)}, tones)
    assert_transcribed_whole(results, log, google, tones)
    sent = speech_requests(google)
    assert sent and all(r.headers["X-Goog-Api-Key"] == KEY for r in sent)
    # The streaming id uploads while the user speaks (a chunked body); the one-shot id after.
    assert any(r.chunked for r in sent) == (module == STREAMING_ID)
    assert KEY not in log


def test_listener_falls_back_to_the_one_shot_plugin_when_the_primary_fails(
        listener_venv, bus, google, tmp_path):
    tones = list(PHRASES)
    stt = {"module": STREAMING_ID, "fallback_module": PLUGIN_ID,
           STREAMING_ID: section(google.endpoint, REVOKED_KEY),      # Google refuses this key: 403
           PLUGIN_ID: section(google.endpoint)}
    results, log = run_listener(listener_venv, bus, tmp_path, stt, tones)
    assert_transcribed_whole(results, log, google, tones)
    keys = [r.headers["X-Goog-Api-Key"] for r in speech_requests(google)]
    # Every utterance was tried with the primary first: refused, never retried as if transient.
    assert keys.count(REVOKED_KEY) == len(tones), keys
    assert KEY in keys and keys[0] == REVOKED_KEY, keys
    assert KEY not in log and REVOKED_KEY not in log


def test_listener_falls_back_when_the_primary_endpoint_is_down(listener_venv, bus, google, tmp_path):
    with socket.socket() as closed:         # bound, never listening: connections are refused
        closed.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{closed.getsockname()[1]}"
        stt = {"module": STREAMING_ID, "fallback_module": PLUGIN_ID,
               STREAMING_ID: {**section(dead), "timeout": 5}, PLUGIN_ID: section(google.endpoint)}
        tones = [700]
        results, log = run_listener(listener_venv, bus, tmp_path, stt, tones)
    assert_transcribed_whole(results, log, google, tones)
    assert KEY not in log
