"""The Recognizer, built from Settings with no plugin manager, against the fake Google over real HTTP:
language resolution (``auto`` included), the refused-model fallback, one joiner, streamed uploads,
detection, and what it cost."""
from __future__ import annotations

import base64
import threading

import pytest
from audio_samples import tone
from conftest import KEY
from fake_google import Fault

from ovos_stt_plugin_google_apikey import errors
from ovos_stt_plugin_google_apikey.audio import PCM
from ovos_stt_plugin_google_apikey.recognizer import Recognizer
from ovos_stt_plugin_google_apikey.settings import Settings
from ovos_stt_plugin_google_apikey.streamed import StreamedUpload

REFUSED = "Invalid recognition 'config': The requested model is currently not supported for language : iw-IL."


@pytest.fixture
def make_recognizer(fake):
    built = []

    def make(default_language=None, **config):
        config.setdefault("key", KEY)
        config.setdefault("endpoint", fake.endpoint)
        config.setdefault("timeout", 5)
        recognizer = Recognizer(Settings.from_mapping(config, env={}), default_language=default_language)
        built.append(recognizer)
        return recognizer

    yield make
    for recognizer in built:
        recognizer.close()


def pcm(seconds: float) -> PCM:
    return PCM(tone(seconds), 16000, 2)


def posts(fake):
    return [r for r in fake.requests if r.method == "POST" and r.json is not None]


def languages_sent(request):
    config = request.json["config"]
    return [config["languageCode"], *config.get("alternativeLanguageCodes", [])]


# -- languages: one resolution, `auto` included; Google never receives "auto"

def test_the_fake_rejects_auto_as_google_does(make_recognizer, fake):
    # The proof the tests below rest on: "auto" sent as a language is Google's 400.
    recognizer = make_recognizer(lang="en-US")
    with pytest.raises(errors.RequestRejectedError, match="bad language code"):
        recognizer.recognize_piece(pcm(0.5), "auto")


@pytest.mark.parametrize("lang,expected", [
    (None, ["en-US", "es-ES"]),            # configured auto, the caller names no language
    ("auto", ["en-US", "es-ES"]),
    ("pt-pt", ["pt-PT"]),
    ("he", ["iw-IL"]),
])
def test_configured_auto_uses_auto_languages(make_recognizer, fake, lang, expected):
    recognizer = make_recognizer(lang="auto", auto_languages=["en-us", "es-ES", "en-US"])
    assert recognizer.languages_for(lang) == expected
    assert recognizer.recognize(pcm(0.5), lang).text == "audio 0.50 seconds at 16000 hertz"
    assert languages_sent(posts(fake)[-1]) == expected


def test_auto_without_auto_languages_uses_the_default_language(make_recognizer, fake):
    recognizer = make_recognizer(default_language="pt-PT", lang="auto")
    recognizer.recognize(pcm(0.5))
    recognizer.recognize(pcm(0.5), "auto")
    assert [languages_sent(r) for r in posts(fake)] == [["pt-PT"], ["pt-PT"]]


def test_auto_asked_of_a_configured_language_uses_it(make_recognizer, fake):
    recognizer = make_recognizer(default_language="pt-PT", lang="fr-FR")
    recognizer.recognize(pcm(0.5), "auto")
    assert languages_sent(posts(fake)[-1]) == ["fr-FR"]


def test_auto_with_nothing_to_choose_from_fails_at_start_up(fake):
    with pytest.raises(errors.ConfigError, match="auto_languages"):
        Recognizer(Settings.from_mapping({"key": KEY, "endpoint": fake.endpoint, "lang": "auto"}, env={}))


def test_no_language_at_all_is_a_config_error(make_recognizer):
    with pytest.raises(errors.ConfigError, match="'lang'"):
        make_recognizer().languages_for(None)


def test_a_language_that_is_not_a_tag_is_a_config_error(make_recognizer):
    with pytest.raises(errors.ConfigError, match="tag such as en-US"):
        make_recognizer(lang="en-US").languages_for(5)  # type: ignore[arg-type]


# -- one joiner, for the results of a request and for the parts of long audio

@pytest.mark.parametrize("lang,joined", [
    ("ja-JP", "こんにちは世界こんにちは世界"), ("zh-CN", "こんにちは世界こんにちは世界"),
    ("th-TH", "こんにちは世界こんにちは世界"), ("lo-LA", "こんにちは世界こんにちは世界"),
    ("en-US", "こんにちは世界 こんにちは世界"),
])
def test_long_audio_parts_are_joined_as_the_language_is_written(make_recognizer, fake, lang, joined):
    fake.recognizer = lambda req, audio: {"results": [{"alternatives": [{"transcript": "こんにちは世界",
                                                                         "confidence": 0.9}]}]}
    transcript = make_recognizer(lang=lang).recognize(pcm(70.0))
    assert len(posts(fake)) == 2 and transcript.text == joined


# -- the refused model: retried once without it, remembered per language

def test_refused_model_is_retried_without_it_and_remembered(make_recognizer, fake, caplog):
    recognizer = make_recognizer(lang="he-IL", model="latest_short")
    assert recognizer.recognize(pcm(0.5)).text == "audio 0.50 seconds at 16000 hertz"
    first, second = posts(fake)
    assert first.json["config"]["model"] == "latest_short" and "model" not in second.json["config"]
    assert recognizer.model_refused_for == {"iw-IL"} and "does not support iw-IL" in caplog.text
    recognizer.recognize(pcm(0.5), "en-US")
    assert posts(fake)[-1].json["config"]["model"] == "latest_short"


# -- streamed uploads: the same path, re-sent from the buffer when Google refuses

def chunks_of(data: bytes, size: int = 3200):
    return [data[i:i + size] for i in range(0, len(data), size)]


def test_streamed_upload_sends_while_it_comes(make_recognizer, fake):
    recognizer = make_recognizer(lang="en-US")
    audio = tone(1.0)
    transcript = StreamedUpload(recognizer).run(chunks_of(audio))
    assert transcript.text == "audio 1.00 seconds at 16000 hertz" and transcript.language == "en-US"
    [sent] = posts(fake)
    assert sent.chunked and base64.b64decode(sent.json["audio"]["content"]) == audio


def test_streamed_upload_refused_model_resends_the_buffer_without_it(make_recognizer, fake, caplog):
    recognizer = make_recognizer(lang="he-IL", model="latest_short")
    audio = tone(1.0)
    assert StreamedUpload(recognizer).run(chunks_of(audio)).text == "audio 1.00 seconds at 16000 hertz"
    refused, resent = posts(fake)
    assert refused.chunked and refused.json["config"]["model"] == "latest_short"
    assert not resent.chunked and "model" not in resent.json["config"]
    assert base64.b64decode(resent.json["audio"]["content"]) == audio        # nothing lost
    assert "does not support iw-IL" in caplog.text
    fake.requests.clear()
    assert StreamedUpload(recognizer).run(chunks_of(audio)).text == "audio 1.00 seconds at 16000 hertz"
    [again] = posts(fake)
    assert again.chunked and "model" not in again.json["config"]            # remembered


def test_streamed_auto_uses_auto_languages(make_recognizer, fake):
    recognizer = make_recognizer(lang="auto", auto_languages=["en-US", "es-ES"])
    StreamedUpload(recognizer).run(chunks_of(tone(0.5)))
    assert [languages_sent(r) for r in posts(fake)] == [["en-US", "es-ES"]]


def test_streamed_long_japanese_is_joined_without_spaces(make_recognizer, fake):
    fake.recognizer = lambda req, audio: {"results": [{"alternatives": [{"transcript": "日本語"}]}]}
    transcript = StreamedUpload(make_recognizer(lang="ja-JP")).run(chunks_of(tone(70.0), 64000))
    assert transcript.text == "日本語日本語"


def test_abandoned_stream_sends_nothing_more(make_recognizer, fake):
    upload = StreamedUpload(make_recognizer(lang="en-US"))

    def chunks():
        yield tone(0.2)
        upload.abandon()
        yield tone(0.2)

    assert upload.run(chunks()).text == ""
    assert posts(fake) == []


# -- detection

def test_detect_language_gives_the_callers_tag(make_recognizer, fake):
    def heard(req, audio):
        config = req["config"]
        spoken = "pt-PT" if "pt-PT" in config.get("alternativeLanguageCodes", []) else config["languageCode"]
        return {"results": [{"alternatives": [{"transcript": "olá", "confidence": 0.8}],
                             "languageCode": spoken.lower()}]}

    fake.recognizer = heard
    recognizer = make_recognizer(lang="en-US")
    assert recognizer.detect_language(pcm(70.0), ["en-us", "pt-pt"]) == ("pt-pt", 0.8)
    [sent] = posts(fake)                              # the first part only
    assert len(base64.b64decode(sent.json["audio"]["content"])) / 32000 <= 55


# -- what it cost, and the small API the server uses

def test_billed_seconds_are_totalled_and_logged(make_recognizer, fake, caplog):
    caplog.set_level("DEBUG")
    recognizer = make_recognizer(lang="en-US")
    assert recognizer.billed_seconds == 0.0
    recognizer.recognize(pcm(1.5))                     # the fake bills 2 s
    recognizer.recognize(pcm(70.0))                    # two parts: 50 + 20 s (ceil)
    assert recognizer.billed_seconds == 2.0 + 51.0 + 20.0
    assert "Google billed 2 s" in caplog.text and "73 s in all" in caplog.text


def test_billed_total_is_thread_safe(make_recognizer, fake):
    recognizer = make_recognizer(lang="en-US")
    threads = [threading.Thread(target=recognizer.recognize, args=(pcm(0.3),)) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert recognizer.billed_seconds == 16.0 and len(posts(fake)) == 16


def test_reserve_and_observe(make_recognizer, fake):
    recognizer = make_recognizer(lang="en-US")
    recognizer.reserve(40)
    seen = []
    recognizer.observe_attempts(lambda result, seconds, retry: seen.append((type(result), retry)))
    fake.script(Fault.http(503))
    recognizer.recognize(pcm(0.5))
    assert seen == [(errors.UnavailableError, False), (dict, True)]
    threads = [threading.Thread(target=recognizer.recognize, args=(pcm(0.2),)) for _ in range(40)]
    fake.delay = 0.2
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert fake.connections > 16           # more than the default pool: 40 were allowed at once
