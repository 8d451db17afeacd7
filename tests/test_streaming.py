"""The streaming plugin, driven the way OVOS's listener drives it, against the fake Google."""
from __future__ import annotations

import base64
import time

import pytest
from audio_samples import silence, tone
from conftest import KEY, PLUGIN_ID, mycroft_conf, run_with_mycroft_conf
from fake_google import Fault

from ovos_stt_plugin_google_apikey import errors

STREAMING_ID = PLUGIN_ID + "-streaming"


@pytest.fixture
def make_streaming(make_engine):
    return lambda **section: make_engine(STREAMING_ID, **section)


def speak(engine, pcm, chunk=3200, pause=0.0, lang=None):
    """The listener's calls: stream_start at the wake word, chunks while speaking, transcribe."""
    engine.stream_start()
    for i in range(0, len(pcm), chunk):
        engine.stream_data(pcm[i:i + chunk])
        if pause:
            time.sleep(pause)
    stopped = time.monotonic()
    return engine.transcribe(lang=lang), stopped


def recognitions(fake):
    return [r for r in fake.requests if r.method == "POST"]


def test_factory_gives_a_streaming_plugin(make_streaming):
    from ovos_plugin_manager.templates.stt import StreamingSTT
    engine = make_streaming()
    assert isinstance(engine, StreamingSTT) and engine.can_stream


def test_upload_starts_while_the_user_speaks(make_streaming, fake):
    engine = make_streaming()
    result, stopped = speak(engine, tone(1.0), chunk=1600, pause=0.05)
    assert result[0] == ("audio 1.00 seconds at 16000 hertz", 0.9)
    [sent] = recognitions(fake)
    assert sent.chunked and sent.received_at < stopped     # the POST was open before the end
    assert sent.json["config"]["languageCode"] == "en-US"
    assert sent.headers["X-Goog-Api-Key"] == KEY and "key" not in sent.query


@pytest.mark.parametrize("chunk", [1, 333, 1000, 4097])
def test_base64_stays_valid_across_any_chunk_size(make_streaming, fake, chunk):
    pcm = tone(0.3)
    result, _ = speak(make_streaming(), pcm, chunk=chunk)
    assert result[0][0] == "audio 0.30 seconds at 16000 hertz"
    assert base64.b64decode(recognitions(fake)[0].json["audio"]["content"]) == pcm


def test_refused_chunked_upload_falls_back_and_is_remembered(make_streaming, fake, caplog):
    fake.refuse_chunked = 411
    engine = make_streaming()
    assert speak(engine, tone(1.0))[0][0][0] == "audio 1.00 seconds at 16000 hertz"
    assert [r.chunked for r in recognitions(fake)] == [True, False]
    assert "refused a chunked upload (HTTP 411)" in caplog.text
    fake.requests.clear()
    assert speak(engine, tone(0.5))[0][0][0] == "audio 0.50 seconds at 16000 hertz"
    assert [r.chunked for r in recognitions(fake)] == [False]        # not tried again


@pytest.mark.parametrize("body", [None,                                      # google.rpc.Status
                                  {"error": "chunked transfer encoding is not supported"},
                                  "Length Required\n", " "])
@pytest.mark.parametrize("proxied", [False, True])
def test_411_with_any_body_is_a_refusal_and_is_remembered(make_streaming, fake, monkeypatch, body,
                                                          proxied):
    section = {}
    if proxied:           # only the proxy (the fake, taking absolute-URI requests) can answer
        monkeypatch.setenv("HTTP_PROXY", fake.endpoint)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        section["endpoint"] = "http://speech.googleapis.invalid"
    fake.script(Fault.http(411) if body is None else Fault("status", 411, body))
    engine = make_streaming(**section)
    assert speak(engine, tone(1.0))[0][0][0] == "audio 1.00 seconds at 16000 hertz"
    first, second = recognitions(fake)
    assert first.chunked and not second.chunked
    assert len(base64.b64decode(second.json["audio"]["content"])) == 32000     # no audio lost
    fake.requests.clear()
    assert speak(engine, tone(0.5))[0][0][0] == "audio 0.50 seconds at 16000 hertz"
    assert [r.chunked for r in recognitions(fake)] == [False]        # not tried again


def test_google_400_on_the_upload_is_raised_not_taken_for_a_refusal(make_streaming, fake):
    fake.script(Fault.http(400, message="Invalid recognition 'config': bad encoding."))
    engine = make_streaming()
    with pytest.raises(errors.RequestRejectedError):
        speak(engine, tone(0.5))
    assert speak(engine, tone(0.5))[0][0][0] == "audio 0.50 seconds at 16000 hertz"
    assert [r.chunked for r in recognitions(fake)] == [True, True]     # still uploading early


def test_connection_dropped_mid_utterance_loses_nothing(make_streaming, fake, caplog):
    fake.drop_after_bytes = 5000
    engine = make_streaming()
    pcm = tone(2.0)
    engine.stream_start()
    for i in range(0, len(pcm), 3200):
        engine.stream_data(pcm[i:i + 3200])
        if any(r.chunked for r in fake.requests):
            fake.drop_after_bytes = None          # Google is back for the fallback
        time.sleep(0.01)
    assert any(r.chunked and r.json is None for r in fake.requests)    # the upload was cut
    assert engine.transcribe()[0][0] == "audio 2.00 seconds at 16000 hertz"
    assert "transcribing the buffered audio instead" in caplog.text
    fallback = recognitions(fake)[-1]
    assert not fallback.chunked and len(base64.b64decode(fallback.json["audio"]["content"])) == 64000


def test_utterance_past_the_sync_limit_goes_the_long_audio_way(make_streaming, fake):
    engine = make_streaming()
    result, _ = speak(engine, tone(70.0), chunk=64000)
    assert result[0][0] == "audio 50.02 seconds at 16000 hertz audio 19.98 seconds at 16000 hertz"
    completed = [r for r in recognitions(fake) if r.json is not None]
    assert [r.chunked for r in completed] == [False, False]     # the progressive one was abandoned


def test_language_settled_at_the_end_is_honoured(make_streaming, fake):
    engine = make_streaming()
    result, _ = speak(engine, tone(0.5), lang="pt-PT")
    assert result[0][0] == "audio 0.50 seconds at 16000 hertz"
    # The upload begun in en-US was abandoned unfinished (no JSON); the fake may record it
    # after the fallback's request, whenever it notices the connection closed.
    completed = [r for r in recognitions(fake) if r.json is not None]
    assert [r.json["config"]["languageCode"] for r in completed] == ["pt-PT"]


def test_google_refusing_the_key_is_raised_not_retried(make_streaming, fake):
    fake.key_errors[KEY] = "invalid"
    engine = make_streaming()
    with pytest.raises(errors.InvalidKeyError):
        speak(engine, tone(0.5))
    assert len(recognitions(fake)) == 1
    assert engine.stream is None                          # ready for the next utterance


def test_google_unavailable_falls_back_to_the_ordinary_path_with_retries(make_streaming, fake):
    fake.script(Fault.http(503))
    result, _ = speak(make_streaming(), tone(0.5))
    assert result[0][0] == "audio 0.50 seconds at 16000 hertz"
    assert [r.chunked for r in recognitions(fake)] == [True, False]


def test_google_not_answering_in_time_is_a_deadline_error_not_a_second_upload(make_streaming, fake):
    # Google hangs after the whole utterance arrived: waiting `timeout` again for the same audio
    # sent a second time would double the wait (the fallback is for refused or dropped uploads).
    engine = make_streaming(timeout=1, retries=0)
    fake.script(Fault.hang(30))
    with pytest.raises(errors.DeadlineError):
        speak(engine, tone(0.5))
    assert len(recognitions(fake)) == 1


def test_no_speech_and_no_audio(make_streaming, fake):
    engine = make_streaming()
    assert speak(engine, silence(1.0))[0] == []
    fake.requests.clear()
    engine.stream_start()
    assert engine.transcribe() == []
    assert recognitions(fake) == [] or not recognitions(fake)[-1].json      # nothing completed


def test_an_abandoned_utterance_is_not_sent(make_streaming, fake):
    engine = make_streaming()
    engine.stream_start()
    engine.stream_data(tone(0.5))
    engine.stream_start()                   # the listener starts over
    engine.stream_data(tone(0.2))
    assert engine.transcribe()[0][0] == "audio 0.20 seconds at 16000 hertz"
    assert [r.json is not None for r in recognitions(fake)].count(True) == 1


def test_warming_without_progressive_upload(make_streaming, fake):
    engine = make_streaming(progressive_upload=False)
    result, _ = speak(engine, tone(0.5), pause=0.01)
    assert result[0][0] == "audio 0.50 seconds at 16000 hertz"
    # An earlier test's abandoned upload (chunked, no JSON) may be recorded late, in this test.
    head, post = [r for r in fake.requests if not (r.chunked and r.json is None)]
    assert head.method == "HEAD" and "X-Goog-Api-Key" not in head.headers   # no key, no cost
    assert post.method == "POST" and not post.chunked
    assert fake.connections == 1                     # the recognition reused the warm connection


def test_one_shot_audio_still_works(make_streaming, fake):
    assert make_streaming().transcribe(tone(0.5))[0] == ("audio 0.50 seconds at 16000 hertz", 0.9)


def test_shares_the_one_shot_section_of_mycroft_conf(fake, tmp_path):
    conf = mycroft_conf({"key": KEY, "endpoint": fake.endpoint, "model": "default"})
    out = run_with_mycroft_conf(tmp_path, conf,
                                "from ovos_stt_plugin_google_apikey.streaming import GoogleAPIKeyStreamingSTT\n"
                                "e = GoogleAPIKeyStreamingSTT()\n"
                                "e.stream_start(); e.stream_data(bytes(range(256)) * 125)\n"
                                "print('TEXT', e.transcribe())\n")
    assert "TEXT [('audio 1.00 seconds at 16000 hertz', 0.9), " in out.stdout, out.stderr
    assert recognitions(fake)[-1].json["config"]["model"] == "default"


def test_refused_model_is_retried_without_it_and_remembered(make_streaming, fake, caplog):
    # HA core #128330: Google refuses latest_short for Hebrew (iw-IL), as the fake does.
    engine = make_streaming(model="latest_short", lang="he-IL")
    result, _ = speak(engine, tone(1.0))
    assert result[0][0] == "audio 1.00 seconds at 16000 hertz"
    refused, resent = recognitions(fake)
    assert refused.chunked and refused.json["config"]["model"] == "latest_short"
    assert refused.json["config"]["languageCode"] == "iw-IL"
    assert not resent.chunked and "model" not in resent.json["config"]
    assert len(base64.b64decode(resent.json["audio"]["content"])) == 32000     # the buffered audio
    assert "does not support iw-IL" in caplog.text
    fake.requests.clear()
    assert speak(engine, tone(0.5))[0][0][0] == "audio 0.50 seconds at 16000 hertz"
    [again] = recognitions(fake)
    assert again.chunked and "model" not in again.json["config"]           # remembered


def test_configured_auto_sends_auto_languages_never_auto(make_streaming, fake):
    engine = make_streaming(lang="auto", auto_languages=["en-US", "es-ES"])
    assert speak(engine, tone(0.5))[0][0][0] == "audio 0.50 seconds at 16000 hertz"
    config = recognitions(fake)[-1].json["config"]
    assert (config["languageCode"], config["alternativeLanguageCodes"]) == ("en-US", ["es-ES"])


def test_long_japanese_utterance_is_joined_without_spaces(make_streaming, fake):
    fake.recognizer = lambda req, audio: {"results": [{"alternatives": [{"transcript": "こんにちは世界"}]}]}
    result, _ = speak(make_streaming(lang="ja-JP"), tone(70.0), chunk=64000)
    assert result[0][0] == "こんにちは世界こんにちは世界"


def test_streaming_id_finds_the_one_shot_section_in_the_factorys_dict(fake):
    # As a caller (or wyoming-ovos-stt) hands OVOS's factory a dict, not a mycroft.conf on disk.
    from ovos_plugin_manager.stt import OVOSSTTFactory
    engine = OVOSSTTFactory.create({"module": STREAMING_ID, "lang": "en-US",
                                    PLUGIN_ID: {"key": KEY, "endpoint": fake.endpoint, "model": "default"}})
    try:
        assert speak(engine, tone(0.5))[0][0][0] == "audio 0.50 seconds at 16000 hertz"
        sent = recognitions(fake)[-1]
        assert sent.headers["X-Goog-Api-Key"] == KEY and sent.json["config"]["model"] == "default"
    finally:
        engine.shutdown()


def test_streaming_id_finds_the_one_shot_section_in_a_dict_passed_to_it(fake):
    from ovos_stt_plugin_google_apikey.streaming import GoogleAPIKeyStreamingSTT
    engine = GoogleAPIKeyStreamingSTT({"module": STREAMING_ID, "lang": "en-US",
                                       PLUGIN_ID: {"key": KEY, "endpoint": fake.endpoint}})
    try:
        assert engine.execute(tone(0.5)) == "audio 0.50 seconds at 16000 hertz"
    finally:
        engine.shutdown()
