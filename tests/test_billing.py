"""What Google billed: totalBilledTime parsed, summed over every request a transcript took,
and printed by the CLI. The fake Google bills like the recorded answer in the reference:
whole seconds, rounded up, at least 1 ("2s")."""
from __future__ import annotations

import json
import math
import re

import pytest
from audio_samples import tone, wav
from test_cli import run

from ovos_stt_plugin_google_apikey.settings import Settings
from ovos_stt_plugin_google_apikey.wire import parse_response


def billed_for(text: str) -> float:
    """What the fake bills for the parts its transcript describes ("audio 1.50 seconds ...")."""
    return float(sum(max(1, math.ceil(float(d))) for d in re.findall(r"audio ([\d.]+) seconds", text)))


@pytest.mark.parametrize("payload, billed", [
    ({"results": [{"alternatives": [{"transcript": "hi"}]}], "totalBilledTime": "2s"}, 2.0),
    ({"results": [{"alternatives": [{"transcript": "hi"}]}], "totalBilledTime": "1.500s"}, 1.5),
    ({"totalBilledTime": "0s", "requestId": "1"}, 0.0),            # no speech, as Google says it
    ({}, None),                                                     # no speech, no field
    ({"results": [], "totalBilledTime": "soon"}, None),
    ({"results": [], "totalBilledTime": "1e999s"}, None),            # not a finite duration
    ({"results": [], "totalBilledTime": 3}, 3.0),
])
def test_total_billed_time_is_parsed(payload, billed):
    assert parse_response(payload).billed_seconds == billed


@pytest.fixture
def engine(plugin):
    return plugin(timeout=10, retries=Settings.retries, auto_languages=["en-US", "pt-PT", "es-ES", "fr-FR", "de-DE"])


def test_a_voice_command_is_billed_what_google_says(engine, fake):
    transcript = engine.recognize(wav(tone(2.3)), "en-US")
    assert transcript.billed_seconds == 3.0 and len(fake.requests) == 1


def test_long_audio_is_billed_the_sum_of_its_parts(engine, fake):
    transcript = engine.recognize(wav(tone(130.0)), "en-US")
    assert len(fake.requests) == 3                               # 130 s in parts under 55 s
    assert transcript.billed_seconds == billed_for(transcript.text) >= 130


def test_language_detection_is_billed_for_every_candidate_group(engine, fake):
    # Five candidates: two requests of the same audio (four languages each at most).
    transcript = engine.recognize(wav(tone(1.2)), "auto")
    assert len(fake.requests) == 2
    assert transcript.billed_seconds == 2 * 2.0


def test_transcribe_prints_billed_seconds_per_file_and_a_total(fake, tmp_path):
    short, long_ = tmp_path / "a.wav", tmp_path / "b.wav"
    short.write_bytes(wav(tone(1.0)))
    long_.write_bytes(wav(tone(70.0)))
    out = run(["transcribe", str(short), str(long_), "--json"], fake)
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert lines[0]["billed_seconds"] == 1.0
    assert lines[1]["billed_seconds"] == billed_for(lines[1]["alternatives"][0]["text"]) >= 70
    total = lines[0]["billed_seconds"] + lines[1]["billed_seconds"]
    assert out.stderr.splitlines()[-1] == f"Google billed {total:g} s for 2 files"


def test_plain_transcribe_keeps_stdout_for_the_text(fake, tmp_path):
    path = tmp_path / "a.wav"
    path.write_bytes(wav(tone(1.0)))
    out = run(["transcribe", str(path)], fake)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "audio 1.00 seconds at 16000 hertz\n"
    assert out.stderr.splitlines()[-1] == "Google billed 1 s for 1 file"
