"""The plugin as OVOS loads and uses it, against the fake Google over real HTTP."""
from __future__ import annotations

import subprocess
import sys
import threading

import pytest
from audio_samples import silence, tone, wav
from conftest import KEY, PLUGIN_ID, mycroft_conf, run_with_mycroft_conf
from fake_google import Fault

from ovos_stt_plugin_google_apikey import errors
from ovos_stt_plugin_google_apikey.plugin import GoogleAPIKeySTT


def audiodata(seconds=1.0, rate=16000):
    from ovos_plugin_manager.utils.audio import AudioData
    return AudioData(tone(seconds, rate), rate, 2)


def test_factory_loads_plugin_from_mycroft_conf(make_engine, fake):
    engine = make_engine(model="command_and_search")
    assert type(engine) is GoogleAPIKeySTT
    assert engine.execute(audiodata(1.0)) == "audio 1.00 seconds at 16000 hertz"
    sent = fake.requests[-1]
    assert sent.path == "/v1/speech:recognize"
    assert sent.json["config"]["languageCode"] == "en-US"
    assert sent.json["config"]["model"] == "command_and_search"


def test_entry_points_seen_by_opm_without_deprecation_warning():
    # A fresh process: OPM's "already warned" list is process-wide state.
    code = ("from ovos_plugin_manager.stt import find_stt_plugins, get_stt_module_configs\n"
            f"plugins = find_stt_plugins(); configs = get_stt_module_configs({PLUGIN_ID!r})\n"
            f"print('FOUND', list(plugins).count({PLUGIN_ID!r}), len(configs))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "FOUND 1 140" in out.stdout, out.stdout + out.stderr
    assert "old style entrypoint" not in out.stdout + out.stderr


def test_config_examples():
    from ovos_plugin_manager.stt import get_stt_module_configs
    configs = get_stt_module_configs(PLUGIN_ID)
    example = configs["en-US"][0]
    assert example["lang"] == "en-US"
    meta = example["meta"]
    assert meta["offline"] is False and meta["extra_setup"]["optional"] is False
    assert "key" in meta["extra_setup"]["description"] and meta["display_name"] and meta["priority"]


def test_no_config_reads_its_own_section_from_mycroft_conf(fake, tmp_path):
    # A real mycroft.conf in a fresh process, the way OPM 2.x hands us nothing.
    conf = mycroft_conf({"key": KEY, "endpoint": fake.endpoint, "model": "default"}, lang="pt-PT")
    out = run_with_mycroft_conf(tmp_path, conf, "from ovos_stt_plugin_google_apikey.plugin import GoogleAPIKeySTT\n"
                                                "e = GoogleAPIKeySTT()\n"
                                                "print('TEXT', e.execute(bytes(range(256)) * 125))\n")
    assert "TEXT audio 1.00 seconds at 16000 hertz" in out.stdout, out.stderr
    assert fake.requests[-1].json["config"]["languageCode"] == "pt-PT"
    assert fake.requests[-1].json["config"]["model"] == "default"


def test_missing_key_fails_at_construction(monkeypatch):
    with pytest.raises(errors.ConfigError, match="GOOGLE_STT_API_KEY"):
        GoogleAPIKeySTT({"lang": "en-US"})


def test_key_from_environment(monkeypatch, fake):
    monkeypatch.setenv("STT_PW", KEY)
    engine = GoogleAPIKeySTT({"lang": "en-US", "endpoint": fake.endpoint})
    assert engine.execute(audiodata()) != ""
    assert fake.requests[-1].headers["x-goog-api-key"] == KEY


def test_invalid_setting_fails_at_construction(make_engine):
    with pytest.raises(errors.ConfigError, match="'max_alternatives' must be a whole number"):
        make_engine(max_alternatives=99)


def test_every_setting_reaches_google(make_engine, fake):
    engine = make_engine(model="latest_long", use_enhanced=True, punctuation=False,
                         profanity_filter=True, phrases=["Mycroft", "OpenVoiceOS"], boost=15,
                         max_alternatives=5)
    engine.transcribe(audiodata())
    config = fake.requests[-1].json["config"]
    assert config["model"] == "latest_long" and config["useEnhanced"] is True
    assert config["enableAutomaticPunctuation"] is False and config["profanityFilter"] is True
    assert config["speechContexts"] == [{"phrases": ["Mycroft", "OpenVoiceOS"], "boost": 15}]
    assert config["maxAlternatives"] == 5


def test_endpoint_with_prefix_and_regional_style_host():
    from fake_google import FakeGoogle
    with FakeGoogle(prefix="/proxy/google") as fake:
        engine = GoogleAPIKeySTT({"key": KEY, "endpoint": fake.endpoint + "/", "lang": "en-US"})
        assert engine.execute(audiodata()) == "audio 1.00 seconds at 16000 hertz"
        assert fake.requests[-1].path == "/proxy/google/v1/speech:recognize"
        engine.shutdown()


def test_key_in_header_never_in_url(make_engine, fake):
    make_engine().execute(audiodata())
    sent = fake.requests[-1]
    assert sent.headers["X-Goog-Api-Key"] == KEY
    assert "key" not in sent.query and KEY not in sent.path


@pytest.mark.parametrize("rate,width,channels", [(8000, 1, 1), (16000, 2, 1), (22050, 3, 2),
                                                 (44100, 2, 2), (48000, 4, 6), (96000, 2, 1), (6000, 2, 1)])
def test_wav_audio_matrix_reaches_google_as_linear16(make_engine, fake, rate, width, channels):
    engine = make_engine()
    text = engine.execute(wav(tone(1.0, rate, width, channels), rate, width, channels))
    sent_rate = rate if 8000 <= rate <= 48000 else 16000
    assert text == f"audio 1.00 seconds at {sent_rate} hertz"
    config = fake.requests[-1].json["config"]
    assert (config["encoding"], config["sampleRateHertz"]) == ("LINEAR16", sent_rate)


def test_raw_pcm_bytes_are_16k_mono(make_engine):
    assert make_engine().execute(tone(2.0)) == "audio 2.00 seconds at 16000 hertz"


def test_speech_recognition_audiodata(make_engine):
    sr = pytest.importorskip("speech_recognition")
    assert make_engine().execute(sr.AudioData(tone(0.5, 32000), 32000, 2)) == "audio 0.50 seconds at 32000 hertz"


def test_no_speech_is_empty_not_an_error(make_engine, fake):
    engine = make_engine()
    assert engine.transcribe(audiodata_silence()) == []
    assert engine.execute(audiodata_silence()) == ""


def audiodata_silence():
    from ovos_plugin_manager.utils.audio import AudioData
    return AudioData(silence(1.0), 16000, 2)


def test_empty_audio_is_an_audio_error(make_engine):
    with pytest.raises(errors.AudioError, match="empty"):
        make_engine().execute(b"")


def test_alternatives_and_multi_result_join(make_engine, fake):
    fake.recognizer = lambda req, audio: {"results": [
        {"alternatives": [{"transcript": "what is the", "confidence": 0.92}, {"transcript": "what is a"},
                          {"transcript": "what's the"}], "languageCode": "en-us"},
        {"alternatives": [{"transcript": " weather tomorrow", "confidence": 0.84},
                          {"transcript": " whether tomorrow"}]}]}
    result = make_engine(max_alternatives=3).transcribe(audiodata())
    assert [t for t, _ in result] == ["what is the weather tomorrow", "what is a whether tomorrow",
                                      "what's the whether tomorrow"]
    assert result[0][1] == pytest.approx(0.88)
    # Unknown confidences never outrank the answer above them (and are not 0.0).
    assert result[1][1] == result[2][1] == pytest.approx(0.88)


def test_top_answer_without_confidence_keeps_ovos_convention(make_engine, fake):
    fake.recognizer = lambda req, audio: {"results": [{"alternatives": [{"transcript": "hello"}]}]}
    assert make_engine().transcribe(audiodata()) == [("hello", 1.0)]


@pytest.mark.parametrize("ovos,google", [("en-us", "en-US"), ("zh-CN", "cmn-Hans-CN"), ("he", "iw-IL"),
                                         ("pt-br", "pt-BR"), ("nb-NO", "no-NO")])
def test_language_mapping_reaches_google(make_engine, fake, ovos, google):
    make_engine(model=None).execute(audiodata(), ovos)
    assert fake.requests[-1].json["config"]["languageCode"] == google


def test_available_languages_are_standard_tags():
    # Home Assistant matches on equal language subtags: he, zh and nb must be there as such.
    from ovos_stt_plugin_google_apikey.languages import google_languages, to_google
    langs = GoogleAPIKeySTT.available_languages
    assert len(langs) == 140
    assert {"he-IL", "zh-CN", "zh-TW", "zh-HK", "nb-NO", "pa-IN", "en-US", "fil-PH"} <= langs
    assert not {"iw-IL", "cmn-Hans-CN", "cmn-Hant-TW", "yue-Hant-HK", "no-NO", "pa-Guru-IN"} & langs
    assert {to_google(tag) for tag in langs} == google_languages()      # every one maps to Google's
    subtags = {tag.split("-")[0] for tag in langs}
    assert {"he", "zh", "nb", "pa"} <= subtags and not {"iw", "cmn", "yue", "no"} & subtags


def test_config_examples_are_keyed_by_standard_tags():
    from ovos_plugin_manager.stt import get_stt_module_configs
    configs = get_stt_module_configs(PLUGIN_ID)
    assert configs["he-IL"][0]["lang"] == "he-IL" and configs["zh-CN"][0]["lang"] == "zh-CN"
    assert "iw-IL" not in configs and "cmn-Hans-CN" not in configs


def test_a_listed_tag_reaches_google_in_googles_form(make_engine, fake):
    engine = make_engine(model=None)
    for tag in sorted(GoogleAPIKeySTT.available_languages):
        engine.execute(audiodata(0.2), tag)          # the fake answers 400 for a tag Google lacks
    assert len(fake.requests) == 140


def test_unsupported_model_is_retried_without_it_and_remembered(make_engine, fake, caplog):
    engine = make_engine(model="latest_short")
    assert engine.execute(audiodata(), "he-IL") == "audio 1.00 seconds at 16000 hertz"
    first, second = fake.requests[-2:]
    assert first.json["config"]["model"] == "latest_short" and "model" not in second.json["config"]
    assert "does not support iw-IL" in caplog.text
    fake.requests.clear()
    engine.execute(audiodata(), "he-IL")
    assert len(fake.requests) == 1 and "model" not in fake.requests[0].json["config"]
    engine.execute(audiodata(), "en-US")                       # other languages keep the model
    assert fake.requests[-1].json["config"]["model"] == "latest_short"


@pytest.mark.parametrize("kind,cls,advice", [
    ("invalid", errors.InvalidKeyError, "apis/credentials"),
    ("expired", errors.InvalidKeyError, "apis/credentials"),
    ("disabled", errors.APINotEnabledError, "speech.googleapis.com"),
    ("billing", errors.APINotEnabledError, "billing"),
    ("restricted", errors.KeyRestrictedError, "API restrictions"),
    ("key_type", errors.KeyTypeError, "standard API key"),
    ("suspended", errors.APINotEnabledError, "enable"),
])
def test_key_and_project_errors_are_typed_and_not_retried(make_engine, fake, kind, cls, advice):
    fake.key_errors[KEY] = kind
    with pytest.raises(cls) as err:
        make_engine(retries=3).execute(audiodata())
    assert advice in str(err.value) and KEY not in str(err.value)
    assert len(fake.requests) == 1


def test_unknown_key(make_engine, fake):
    with pytest.raises(errors.InvalidKeyError, match="API_KEY_INVALID"):
        make_engine(key="not-a-key").execute(audiodata())


def test_audio_rejected_by_google_is_not_retried(make_engine, fake):
    fake.script(Fault.http(400, message="Invalid recognition 'config': bad sample rate hertz."))
    with pytest.raises(errors.RequestRejectedError, match="bad sample rate"):
        make_engine(retries=3).execute(audiodata())
    assert len(fake.requests) == 1


def test_configured_auto_with_auto_languages_and_no_language_named(make_engine, fake):
    # wyoming-ovos-stt calls execute(audio): the configured "auto" must not reach Google.
    engine = make_engine(lang="auto", auto_languages=["en-US", "pt-PT"])
    assert engine.execute(audiodata()) == "audio 1.00 seconds at 16000 hertz"
    assert engine.transcribe(audiodata())[0][0] == "audio 1.00 seconds at 16000 hertz"
    for sent in fake.requests:
        config = sent.json["config"]
        assert (config["languageCode"], config["alternativeLanguageCodes"]) == ("en-US", ["pt-PT"])


def test_configured_auto_without_auto_languages_uses_ovos_language(make_engine, fake):
    # OVOS's own language: the test configuration's (no mycroft.conf: OVOS's default, en-US).
    from ovos_config import Configuration
    engine = make_engine(lang="auto")
    engine.execute(audiodata(), "auto")
    engine.execute(audiodata())
    assert [r.json["config"]["languageCode"] for r in fake.requests] == [Configuration()["lang"]] * 2


def test_long_japanese_audio_is_joined_without_spaces(make_engine, fake):
    fake.recognizer = lambda req, audio: {"results": [{"alternatives": [{"transcript": "こんにちは世界"}]}]}
    assert make_engine().execute(audiodata(70.0), "ja-JP") == "こんにちは世界こんにちは世界"
    assert len(fake.requests) == 2


def test_billed_seconds_are_logged_and_totalled(make_engine, fake, caplog):
    caplog.set_level("DEBUG")
    engine = make_engine()
    engine.execute(audiodata(1.5))
    engine.execute(audiodata(0.5))
    assert engine.recognizer.billed_seconds == 3.0               # the fake bills 2 s and 1 s
    assert "Google billed 2 s" in caplog.text and "3 s in all" in caplog.text


def test_bad_language_code(make_engine):
    with pytest.raises(errors.RequestRejectedError, match="bad language code"):
        make_engine().execute(audiodata(), "xx-YY")


@pytest.mark.parametrize("status", [500, 503, 504, 429])
def test_transient_errors_are_retried(make_engine, fake, status):
    fake.script(Fault.http(status, retry_after=0.05 if status == 429 else None), Fault.http(status))
    assert make_engine(retries=2).execute(audiodata()) == "audio 1.00 seconds at 16000 hertz"
    assert len(fake.requests) == 3


def test_retries_are_bounded(make_engine, fake):
    fake.script(*[Fault.http(503)] * 5)
    with pytest.raises(errors.UnavailableError, match="503"):
        make_engine(retries=1).execute(audiodata())
    assert len(fake.requests) == 2


def test_retry_after_past_the_deadline_fails_fast(make_engine, fake):
    import time
    fake.script(Fault.http(429, retry_after=30))
    started = time.monotonic()
    with pytest.raises(errors.QuotaError, match="would pass the 5 s timeout"):
        make_engine(retries=3, timeout=5).execute(audiodata())
    assert time.monotonic() - started < 4            # it did not sleep toward the 30 s
    assert len(fake.requests) == 1


def test_deadline_covers_a_hang(make_engine, fake):
    import time
    fake.script(Fault.hang(10))
    started = time.monotonic()
    with pytest.raises(errors.DeadlineError, match="1 s timeout"):
        make_engine(timeout=1, retries=3).execute(audiodata())
    assert time.monotonic() - started < 3


def test_deadline_covers_a_trickle(make_engine, fake):
    import time
    fake.script(Fault.trickle(8))
    started = time.monotonic()
    with pytest.raises(errors.DeadlineError):
        make_engine(timeout=1.5, retries=0).execute(audiodata())
    assert time.monotonic() - started < 3.5


@pytest.mark.parametrize("fault", [Fault.html(), Fault.truncated(), Fault.drop(), Fault.reset()],
                         ids=["html", "truncated", "drop", "reset"])
def test_broken_answers_are_retried_then_succeed(make_engine, fake, fault):
    fake.script(fault)
    assert make_engine(retries=1).execute(audiodata()) == "audio 1.00 seconds at 16000 hertz"
    assert len(fake.requests) == 2


@pytest.mark.parametrize("fault,match", [(Fault.html(), "not JSON"), (Fault.truncated(), "not JSON"),
                                         (Fault.shape(), "unexpected shape"), (Fault.drop(), "cannot reach")],
                         ids=["html", "truncated", "shape", "drop"])
def test_broken_answers_without_retries_are_clear_errors(make_engine, fake, fault, match):
    fake.script(fault)
    with pytest.raises(errors.UnavailableError, match=match):
        make_engine(retries=0).execute(audiodata())


def test_connection_refused_is_unavailable():
    engine = GoogleAPIKeySTT({"key": KEY, "endpoint": "http://127.0.0.1:9", "lang": "en-US",
                              "retries": 1})
    with pytest.raises(errors.UnavailableError, match="cannot reach http://127.0.0.1:9"):
        engine.execute(tone(0.5))


def test_dns_failure_is_unavailable():
    engine = GoogleAPIKeySTT({"key": KEY, "endpoint": "https://no-such-host.invalid", "lang": "en-US",
                              "retries": 0})
    with pytest.raises(errors.UnavailableError, match="cannot reach https://no-such-host.invalid"):
        engine.execute(tone(0.5))


def test_concurrent_use_of_one_engine(make_engine, fake):
    engine = make_engine()
    fake.delay = 0.05
    results, failures = {}, []

    def worker(i):
        try:
            results[i] = engine.execute(tone(0.5 + i / 100))
        except Exception as exc:  # collected and asserted below
            failures.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not failures
    assert results == {i: f"audio {0.5 + i / 100:.2f} seconds at 16000 hertz" for i in range(24)}
    pool = engine.recognizer.client.pool_size
    assert pool < 24 and fake.connections <= pool      # the pool, not one connection per request


def test_key_leaks_nowhere(fake, caplog):
    marker = "MARKER-KEY-8f2d1c"
    fake.valid_keys.add(marker)
    caplog.set_level("DEBUG")                # urllib3 included
    engine = GoogleAPIKeySTT({"key": marker, "endpoint": fake.endpoint, "lang": "en-US", "retries": 1})
    seen = [repr(engine), str(engine.settings), repr(engine.recognizer.client)]
    engine.execute(tone(0.5))
    fake.script(Fault.http(503), Fault.http(503))
    fake.key_errors[marker] = "restricted"
    for _ in range(2):
        try:
            engine.execute(tone(0.5))
        except errors.GoogleSTTError as exc:
            seen += [str(exc), repr(exc), str(exc.__cause__)]
    fake.key_errors.clear()
    assert len(seen) > 5 and "urllib3" in caplog.text and "retrying in" in caplog.text   # ours too
    for text in seen + [caplog.text] + [r.body.decode("latin-1") for r in fake.requests]:
        assert marker not in text
    assert all(marker not in str(r.query) and marker not in r.path for r in fake.requests)
    engine.shutdown()


@pytest.fixture
def through_proxy(fake, monkeypatch):
    """An engine whose endpoint's host does not resolve: only the proxy (the fake, which takes
    absolute-URI requests as a proxy does) can answer."""
    monkeypatch.setenv("HTTP_PROXY", fake.endpoint)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    engine = GoogleAPIKeySTT({"key": KEY, "endpoint": "http://speech.googleapis.invalid", "lang": "en-US",
                              "retries": 0, "timeout": 1.5})
    yield engine
    engine.shutdown()


def test_https_proxy_environment_is_honoured(through_proxy, fake):
    assert through_proxy.execute(tone(0.5)) == "audio 0.50 seconds at 16000 hertz"
    assert fake.requests[-1].path == "/v1/speech:recognize"


def test_deadline_holds_through_an_http_proxy(through_proxy, fake):
    import time
    fake.script(Fault.trickle(8))
    started = time.monotonic()
    with pytest.raises(errors.DeadlineError):
        through_proxy.execute(tone(0.5))
    assert time.monotonic() - started < 3.5


def test_waiting_for_a_pooled_connection_is_bounded_by_the_deadline(fake):
    import time

    from ovos_stt_plugin_google_apikey.client import SpeechClient
    from ovos_stt_plugin_google_apikey.settings import Settings
    from ovos_stt_plugin_google_apikey.wire import build_recognize_body
    settings = Settings.from_mapping({"key": KEY, "endpoint": fake.endpoint, "timeout": 1, "retries": 0}, env={})
    client = SpeechClient(settings, pool_size=1)
    body = build_recognize_body(tone(0.2), "en-US", **settings.body_options())
    fake.script(Fault.hang(4))
    holder = threading.Thread(target=lambda: pytest.raises(errors.DeadlineError, client.recognize, body,
                                                           time.monotonic() + 3.5))
    holder.start()
    while not fake.requests:                      # the one connection is now held by the hang
        time.sleep(0.01)
    started = time.monotonic()
    with pytest.raises(errors.DeadlineError):
        client.recognize(body)                    # its own 1 s deadline, waiting for the pool
    assert time.monotonic() - started < 2.5       # not the 3.5 s the holder keeps the connection
    holder.join(10)
    client.close()
