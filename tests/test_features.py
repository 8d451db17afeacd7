"""Long audio in parallel, language detection with Google, FLAC/Opus uploads (real HTTP, fake Google)."""
from __future__ import annotations

import base64
import subprocess
import sys
import threading
import time

import pytest
from audio_samples import silence, tone
from fake_google import Fault

from ovos_stt_plugin_google_apikey import errors
from ovos_stt_plugin_google_apikey.audio import PCM, split


def speech_with_gaps(seconds: float, gaps_at=(), rate=16000) -> bytes:
    """Tone ("speech") with 0.4 s of silence centred on each gap time."""
    out = bytearray()
    t = 0.0
    for gap in list(gaps_at) + [seconds]:
        out += tone(gap - 0.2 - t, rate) if gap - 0.2 > t else b""
        if gap < seconds:
            out += silence(0.4, rate)
        t = gap + 0.2
    return bytes(out[: int(seconds * rate) * 2])


def test_split_cuts_in_the_quiet_stretch():
    pcm = PCM(speech_with_gaps(130, gaps_at=(52.0, 104.0)), 16000, 2)
    pieces = split(pcm, 55.0)
    assert [round(p.duration, 1) for p in pieces][:2] == pytest.approx([52.0, 52.0], abs=0.25)
    assert sum(len(p.data) for p in pieces) == len(pcm.data)           # nothing lost
    assert all(p.duration <= 55.0 for p in pieces)


def test_short_audio_is_one_request(make_engine, fake):
    make_engine().execute(tone(5.0))
    assert len(fake.requests) == 1


def counting(seconds, answer):
    """A fake recognizer that takes `seconds` and records the peak number of requests in flight."""
    active, peak, lock = [0], [0], threading.Lock()

    def recognizer(req, audio):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(seconds)
        with lock:
            active[0] -= 1
        return answer(audio)

    return recognizer, peak


def test_long_audio_is_transcribed_in_parallel_parts_in_order(make_engine, fake):
    fake.recognizer, peak = counting(0.3, lambda audio: {"results": [{"alternatives": [
        {"transcript": f"part of {audio.duration:.0f} seconds", "confidence": 0.9}]}]})
    engine = make_engine(max_workers=4)
    progress = []
    transcript = engine.recognize(speech_with_gaps(200, gaps_at=(50.0, 100.0, 150.0)),
                                  progress=lambda done, total: progress.append((done, total)))
    assert transcript.text == "part of 50 seconds part of 50 seconds part of 50 seconds part of 50 seconds"
    assert len(fake.requests) == 4 and peak[0] > 1          # concurrently, not one after another
    assert progress[-1] == (4, 4)
    durations = [len(base64.b64decode(r.json["audio"]["content"])) / 32000 for r in fake.requests]
    assert sorted(round(d) for d in durations) == [50, 50, 50, 50]


def test_workers_bound_concurrency(make_engine, fake):
    fake.recognizer, peak = counting(0.2, lambda audio: {"results": [{"alternatives": [{"transcript": "x"}]}]})
    make_engine(max_workers=2).execute(tone(240.0))
    assert len(fake.requests) == 5 and peak[0] == 2


def test_a_failed_part_fails_the_whole(make_engine, fake):
    fake.delay = 0.1
    fake.script(Fault.delay(0), Fault.http(400, message="Invalid audio."))
    with pytest.raises(errors.RequestRejectedError, match=r"part \d of 3 \(\d+-\d+ s\) failed"):
        make_engine(max_workers=1).execute(tone(150.0))


def test_over_the_limit_single_piece_is_never_sent_as_one(make_engine, fake):
    make_engine().execute(tone(61.0))
    assert len(fake.requests) == 2       # Google would answer "Sync input too long" to one


def _language_recognizer(spoken: str, confidence: float = 0.91):
    """Google hears `spoken` when it is among the request's languages."""
    def recognize(req, audio):
        config = req["config"]
        candidates = [config["languageCode"], *config.get("alternativeLanguageCodes", [])]
        if spoken in candidates:
            return {"results": [{"alternatives": [{"transcript": "olá mundo", "confidence": confidence}],
                                 "languageCode": spoken.lower()}]}
        return {"results": [{"alternatives": [{"transcript": "hola mundo", "confidence": 0.3}],
                             "languageCode": config["languageCode"].lower()}]}
    return recognize


def test_detect_language_in_one_request(make_engine, fake):
    fake.recognizer = _language_recognizer("pt-PT")
    lang, conf = make_engine().detect_language(tone(1.0), ["en-us", "pt-pt", "es-es"])
    assert (lang, conf) == ("pt-pt", 0.91)          # the caller's own tag back
    assert len(fake.requests) == 1
    config = fake.requests[0].json["config"]
    assert config["languageCode"] == "en-US" and config["alternativeLanguageCodes"] == ["pt-PT", "es-ES"]


def test_detect_language_fans_out_past_four(make_engine, fake):
    fake.recognizer = _language_recognizer("ja-JP")
    candidates = ["en-US", "pt-PT", "es-ES", "fr-FR", "de-DE", "it-IT", "ja-JP", "nl-NL", "pl-PL"]
    assert make_engine().detect_language(tone(1.0), candidates) == ("ja-JP", 0.91)
    assert len(fake.requests) == 3
    sent = sorted([r.json["config"]["languageCode"], *r.json["config"].get("alternativeLanguageCodes", [])]
                  for r in fake.requests)
    assert sorted(sum(sent, [])) == sorted(candidates)


def test_detect_language_single_candidate_needs_no_request(make_engine, fake):
    assert make_engine().detect_language(tone(1.0), ["de-DE"]) == ("de-DE", 1.0)
    assert fake.requests == []


def test_detect_language_without_candidates_is_a_config_error(make_engine):
    with pytest.raises(errors.ConfigError, match="auto_languages"):
        make_engine().detect_language(tone(1.0))


def test_transcribe_auto_uses_auto_languages(make_engine, fake):
    fake.recognizer = _language_recognizer("es-ES")
    engine = make_engine(auto_languages=["en-US", "es-ES"])
    assert engine.transcribe(tone(1.0), "auto") == [("olá mundo", 0.91)]
    assert engine.recognize(tone(1.0), "auto").language == "es-ES"
    assert fake.requests[-1].json["config"]["alternativeLanguageCodes"] == ["es-ES"]


def test_transcribe_auto_without_auto_languages_uses_the_default(make_engine, fake):
    make_engine(lang="fr-FR").execute(tone(1.0), "auto")
    assert fake.requests[-1].json["config"]["languageCode"] == "fr-FR"
    assert "alternativeLanguageCodes" not in fake.requests[-1].json["config"]


@pytest.mark.parametrize("encoding,google,ratio", [("flac", "FLAC", 0.9), ("ogg_opus", "OGG_OPUS", 0.3)])
def test_compressed_uploads(make_engine, fake, encoding, google, ratio):
    pytest.importorskip("soundfile")
    import numpy as np
    noise = (np.random.default_rng(1).normal(0, 2000, 16000 * 3)).astype("<i2").tobytes()
    assert make_engine(encoding=encoding).execute(noise) == "audio 3.00 seconds at 16000 hertz"
    config = fake.requests[-1].json["config"]
    assert (config["encoding"], config["sampleRateHertz"]) == (google, 16000)
    make_engine().execute(noise)
    sizes = [len(r.body) for r in fake.requests]
    assert sizes[0] < ratio * sizes[1]


def test_opus_at_a_rate_opus_lacks_is_resampled(make_engine, fake):
    pytest.importorskip("soundfile")
    assert make_engine(encoding="ogg_opus").execute(
        __import__("audio_samples").wav(tone(1.0, 44100), 44100)) == "audio 1.00 seconds at 48000 hertz"


def test_flac_without_the_extra_fails_at_construction_with_the_install_command(fake):
    code = ("import sys; sys.modules['soundfile'] = None\n"
            "from ovos_stt_plugin_google_apikey.plugin import GoogleAPIKeySTT\n"
            "from ovos_stt_plugin_google_apikey.errors import ConfigError\n"
            "try:\n"
            "    GoogleAPIKeySTT({'key': 'k', 'lang': 'en-US', 'encoding': 'flac'})\n"
            "except ConfigError as e:\n"
            "    print('ERR', e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "ERR 'encoding' 'flac' needs the optional encoder: pip install " \
           "'ovos-stt-plugin-google-apikey[flac]'" in out.stdout, out.stderr


EIGHT = ["en-US", "pt-PT", "es-ES", "fr-FR", "de-DE", "it-IT", "ja-JP", "nl-NL"]


def until(condition, seconds=20.0):
    """Poll for a state the test waits on (no race: the condition only becomes true once)."""
    end = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < end, "timed out waiting"
        time.sleep(0.01)


def test_detection_and_short_utterances_never_wait_behind_a_long_recording(make_engine, fake):
    release = threading.Event()
    languages = _language_recognizer("ja-JP")

    def recognizer(req, audio):
        if "alternativeLanguageCodes" not in req["config"]:     # the long recording: held
            release.wait(30)
            return {"results": [{"alternatives": [{"transcript": "part", "confidence": 0.9}]}]}
        return languages(req, audio)

    fake.recognizer = recognizer
    engine = make_engine(max_workers=2, timeout=25, auto_languages=EIGHT)
    long_text = []
    recording = threading.Thread(target=lambda: long_text.append(engine.execute(tone(1.0) * 240)))
    recording.start()
    try:
        until(lambda: len(fake.requests) == 2)     # both part workers busy, three parts queued
        assert engine.detect_language(tone(1.0), EIGHT) == ("ja-JP", 0.91)
        assert engine.transcribe(tone(2.0), "auto") == [("olá mundo", 0.91)]
        assert recording.is_alive() and len(fake.requests) == 2 + 2 + 2
    finally:
        release.set()
        recording.join(30)
    assert long_text == ["part part part part part"]


def test_one_deadline_bounds_a_detection_including_its_wait_for_a_worker(make_engine, fake):
    # One candidate worker: the second group of 4 waits for the first's request (1 s). Counted
    # from the call, the 1.5 s timeout leaves it too little; counted from when it started (the
    # old way) it would be answered after 2 s, past the call's timeout.
    fake.delay = 1.0
    engine = make_engine(max_workers=1, timeout=1.5, retries=0)
    with pytest.raises(errors.DeadlineError, match="1.5 s timeout"):
        engine.detect_language(tone(1.0), EIGHT)
