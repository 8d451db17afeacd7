"""Deadlines that fit real networks: an upload that keeps moving is never cut by the answer's
deadline (`timeout` starts once the audio has been acknowledged), and a stalled one fails
within seconds. The uplink is the fake's throttled receive (its `read_rate_bps`)."""
from __future__ import annotations

import time

import pytest
from audio_samples import tone
from conftest import KEY, build_plugin
from fake_google import FakeGoogle, Fault

from ovos_stt_plugin_google_apikey import errors
from ovos_stt_plugin_google_apikey.settings import Settings
from ovos_stt_plugin_google_apikey.timeouts import UPLOAD_STALL

ONE_MBIT = 1e6 / 8          # bytes per second


def engine_for(fake, **settings):
    return build_plugin(fake.endpoint, **{"timeout": Settings.timeout, **settings})   # the default


def test_a_slow_upload_that_keeps_moving_is_not_cut_by_the_timeout():
    # 12 s of audio is ~512 KB of JSON: ~4 s at 1 Mbit/s, four times the 1 s timeout.
    with FakeGoogle(valid_keys=(KEY,), read_rate_bps=ONE_MBIT) as fake:
        engine = engine_for(fake, timeout=1)
        try:
            started = time.monotonic()
            assert engine.execute(tone(12.0)) == "audio 12.00 seconds at 16000 hertz"
            took = time.monotonic() - started
        finally:
            engine.shutdown()
        body = len(fake.requests[0].body)
    assert body / ONE_MBIT > 3          # the upload alone really was longer than the timeout
    assert took > 3 and took < 60       # it was waited for (and nothing hung)


@pytest.mark.slow
def test_a_long_part_at_one_mbit_with_the_default_timeout():
    # A 41 s dictation is ~1.7 MB: ~14 s at 1 Mbit/s, past the default 10 s timeout.
    with FakeGoogle(valid_keys=(KEY,), read_rate_bps=ONE_MBIT, delay=0.2) as fake:
        engine = engine_for(fake)
        try:
            assert engine.execute(tone(41.0)) == "audio 41.00 seconds at 16000 hertz"
        finally:
            engine.shutdown()


def test_the_answer_deadline_still_holds_after_a_slow_upload():
    with FakeGoogle(valid_keys=(KEY,), read_rate_bps=ONE_MBIT) as fake:
        fake.script(Fault.hang(30))
        engine = engine_for(fake, timeout=1)
        try:
            started = time.monotonic()
            with pytest.raises(errors.DeadlineError, match="within the 1 s timeout"):
                engine.execute(tone(6.0))            # ~2 s of upload, then no answer
            took = time.monotonic() - started
        finally:
            engine.shutdown()
    assert took < 20


def test_a_stalled_upload_fails_within_seconds():
    # 55 s of audio (2.3 MB) is more than the socket buffers hold: the upload itself stalls.
    with FakeGoogle(valid_keys=(KEY,), stall_after_bytes=50_000) as fake:
        engine = engine_for(fake, timeout=60)
        try:
            started = time.monotonic()
            with pytest.raises(errors.DeadlineError, match="no progress") as info:
                engine.execute(tone(55.0))
            took = time.monotonic() - started
        finally:
            engine.shutdown()
    assert f"{UPLOAD_STALL:g} s" in str(info.value)
    assert took < 20                    # far under the 60 s timeout: the stall, not the deadline


def test_a_stall_once_the_audio_is_in_the_peers_buffers_is_bounded_by_the_timeout():
    # 3 s of audio fits the buffers: the peer's kernel acknowledges it all, so the upload is
    # done as far as TCP can tell, and the answer's deadline applies.
    with FakeGoogle(valid_keys=(KEY,), stall_after_bytes=50_000) as fake:
        engine = engine_for(fake, timeout=2)
        try:
            started = time.monotonic()
            with pytest.raises(errors.DeadlineError):
                engine.execute(tone(3.0))
            took = time.monotonic() - started
        finally:
            engine.shutdown()
    assert took < 20


@pytest.mark.slow
def test_a_stalled_upload_is_retried_within_its_retries():
    with FakeGoogle(valid_keys=(KEY,), stall_after_bytes=50_000) as fake:
        engine = engine_for(fake, timeout=60, retries=1)
        try:
            with pytest.raises(errors.DeadlineError, match="no progress"):
                engine.execute(tone(55.0))
        finally:
            engine.shutdown()
        assert fake.connections == 2       # the stalled connection was dropped, a new one tried


def test_detection_over_several_groups_is_not_cut_while_its_uploads_move():
    # Five candidates are two requests of the same 10 s (~430 KB each): ~3.4 s apiece at
    # 1 Mbit/s, past the 2 s timeout, which starts once each upload has arrived.
    with FakeGoogle(valid_keys=(KEY,), read_rate_bps=ONE_MBIT) as fake:
        engine = engine_for(fake, timeout=2)
        try:
            lang, _ = engine.detect_language(tone(10.0), ["en-US", "pt-PT", "es-ES", "fr-FR", "de-DE"])
        finally:
            engine.shutdown()
        uploads = [len(r.body) / ONE_MBIT for r in fake.requests]
    assert lang in ("en-US", "fr-FR")        # the first candidate of each group, as the fake hears
    assert len(uploads) == 2 and min(uploads) > 2


@pytest.mark.slow
def test_the_retry_without_a_refused_model_gets_its_own_timeout():
    # The refused request's 3.4 s upload used up the 2 s timeout counted from its start; the
    # retry without the model is not failed for it.
    with FakeGoogle(valid_keys=(KEY,), read_rate_bps=ONE_MBIT) as fake:
        fake.unsupported_models = {("latest_short", "en-us")}
        engine = engine_for(fake, timeout=2)
        try:
            assert engine.execute(tone(10.0)) == "audio 10.00 seconds at 16000 hertz"
        finally:
            engine.shutdown()
        assert ["model" in r.json["config"] for r in fake.requests] == [True, False]
