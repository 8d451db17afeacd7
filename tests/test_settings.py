"""Settings: every key's default, validation message, and the key's sources."""
from __future__ import annotations

import pytest

from ovos_stt_plugin_google_apikey.errors import ConfigError
from ovos_stt_plugin_google_apikey.settings import MODELS, Settings

SECRET = "MARKER-settings-secret-123"


def test_defaults():
    s = Settings.from_mapping({}, env={})
    assert (s.key, s.lang, s.endpoint, s.model) == ("", None, "https://speech.googleapis.com", "latest_short")
    assert (s.use_enhanced, s.punctuation, s.profanity_filter) == (False, True, False)
    assert (s.phrases, s.boost, s.max_alternatives, s.timeout, s.retries) == ((), None, 3, 10.0, 2)
    assert not s.has_key


def test_key_sources_in_order():
    env = {"GOOGLE_STT_API_KEY": "from-env", "STT_PW": "from-bridge"}
    assert Settings.from_mapping({"key": "from-conf"}, env=env).key == "from-conf"
    assert Settings.from_mapping({}, env=env).key == "from-env"
    assert Settings.from_mapping({}, env={"STT_PW": "from-bridge"}).key == "from-bridge"
    assert Settings.from_mapping({"key": ""}, env={"STT_PW": "x"}).key == "x"


def test_key_is_not_in_repr():
    s = Settings.from_mapping({"key": SECRET}, env={})
    assert SECRET not in repr(s) and SECRET not in str(s)


def test_all_values_accepted():
    conf = {"key": "k", "lang": "pt-BR", "endpoint": "https://eu-speech.googleapis.com/",
            "model": "command_and_search", "use_enhanced": True, "punctuation": False,
            "profanity_filter": True, "phrases": ["Mycroft", "$MONTH"], "boost": 12.5,
            "max_alternatives": 5, "timeout": 4, "retries": 0}
    s = Settings.from_mapping(conf, env={})
    assert s.endpoint == "https://eu-speech.googleapis.com"      # trailing slash dropped
    assert s.phrases == ("Mycroft", "$MONTH") and s.boost == 12.5
    assert (s.model, s.use_enhanced, s.punctuation, s.profanity_filter) == ("command_and_search", True, False, True)
    assert (s.max_alternatives, s.timeout, s.retries, s.lang) == (5, 4, 0, "pt-BR")


def test_null_model_lets_google_choose():
    assert Settings.from_mapping({"model": None}, env={}).model is None


def test_ovos_merged_keys_are_tolerated():
    s = Settings.from_mapping({"module": "x", "fallback_module": "y", "lang": "en-US"}, env={})
    assert s.lang == "en-US"


@pytest.mark.parametrize("name,value,expect", [
    ("model", "latest-short", "'model' must be one of latest_short"),
    ("model", 5, "'model' must be one of"),
    ("endpoint", "speech.googleapis.com", "'endpoint' must be an http(s) base URL"),
    ("endpoint", "ftp://x", "'endpoint' must be an http(s) base URL"),
    ("endpoint", "https://x/?key=1", "'endpoint' must be an http(s) base URL"),
    ("endpoint", None, "'endpoint' must be"),
    ("use_enhanced", "yes", "'use_enhanced' must be true or false"),
    ("punctuation", 1, "'punctuation' must be true or false"),
    ("profanity_filter", None, "'profanity_filter' must be true or false"),
    ("phrases", "Mycroft", "'phrases' must be a list of strings"),
    ("phrases", ["ok", ""], "each of 'phrases' must be a non-empty string"),
    ("phrases", ["x" * 101], "at most 100 characters"),
    ("phrases", ["a"] * 5001, "at most 5000 entries"),
    ("boost", 21, "'boost' must be a number from 0 to 20"),
    ("boost", -1, "'boost' must be a number from 0 to 20"),
    ("boost", "high", "'boost' must be a number"),
    ("max_alternatives", 0, "'max_alternatives' must be a whole number from 1 to 30"),
    ("max_alternatives", 31, "from 1 to 30"),
    ("max_alternatives", 2.5, "whole number"),
    ("max_alternatives", True, "whole number"),
    ("timeout", 0, "'timeout' must be a number from 0.5 to 300"),
    ("timeout", "10", "'timeout' must be a number"),
    ("retries", -1, "'retries' must be a whole number from 0 to 10"),
    ("retries", 11, "from 0 to 10"),
    ("key", 12345, "'key' must be a string"),
    ("lang", 5, "'lang' must be a string"),
])
def test_invalid_values_name_the_key(name, value, expect):
    with pytest.raises(ConfigError) as err:
        Settings.from_mapping({name: value}, env={})
    assert expect in str(err.value)


def test_every_model_listed_is_accepted():
    for model in MODELS:
        assert Settings.from_mapping({"model": model}, env={}).model == model


def test_plain_http_to_remote_host_warns(caplog):
    caplog.set_level("WARNING")
    Settings.from_mapping({"endpoint": "http://192.0.2.1:8080/proxy"}, env={})
    assert "unencrypted" in caplog.text
    caplog.clear()
    Settings.from_mapping({"endpoint": "http://127.0.0.1:8080/proxy"}, env={})
    assert "unencrypted" not in caplog.text


@pytest.mark.parametrize("raw,what", [
    (SECRET + "\n# prod key", "more than one line"),
    (SECRET + "\r\nother", "more than one line"),
    ("MARKER secret", "a space"),
    (SECRET + "é", "non-ASCII"),
    (SECRET + "\x00", "control character"),
    (SECRET + '"', "cannot be sent in an HTTP header"),
])
def test_keys_that_cannot_be_a_header_value_are_refused_without_showing_them(raw, what):
    for config, env, source in (({"key": raw}, {}, "'key'"), ({}, {"GOOGLE_STT_API_KEY": raw}, "GOOGLE_STT_API_KEY"),
                                ({}, {"STT_PW": raw}, "STT_PW")):
        with pytest.raises(ConfigError) as info:
            Settings.from_mapping(config, env=env)
        assert what in str(info.value) and source in str(info.value)
        assert "MARKER" not in str(info.value) and "MARKER" not in repr(info.value)


def test_key_whitespace_around_is_stripped():
    assert Settings.from_mapping({}, env={"GOOGLE_STT_API_KEY": f"  {SECRET}\n"}).key == SECRET


@pytest.mark.parametrize("endpoint,expect", [
    ("http://[::1", "'endpoint' must be an http(s) base URL"),
    ("http://host:99999", "'endpoint' must be an http(s) base URL"),
    ("http://host:0", "port 0"),
    ("http://host:port", "'endpoint' must be an http(s) base URL"),
    ("https://speech.googleapis.com\r\nX-Evil: 1", "no spaces, control"),
    ("https://speech.googleapis.com/\x00", "no spaces, control"),
    ("https://spe ech.googleapis.com", "no spaces, control"),
    ("https://spéech.googleapis.com", "xn--"),
    ("https://bad..host", "invalid host name"),
    ("https://bad!host", "invalid host name"),
    ("https://speech.googleapis.com/v1", "without the API version or method"),
    ("https://speech.googleapis.com/v1p1beta1/speech:recognize", "without the API version or method"),
    ("https://speech.googleapis.com/v1/speech:longrunningrecognize", "without the API version or method"),
    ("https://x#frag", "'endpoint' must be an http(s) base URL"),
])
def test_endpoint_is_checked_in_full_at_start_up(endpoint, expect):
    with pytest.raises(ConfigError, match=expect.replace("(", r"\(").replace(")", r"\)")):
        Settings.from_mapping({"endpoint": endpoint}, env={})


@pytest.mark.parametrize("endpoint,base", [
    ("https://speech.googleapis.com/v1/speech:recognize", "https://speech.googleapis.com"),
    ("http://127.0.0.1:8080/prefix/v1/speech:recognize/", "http://127.0.0.1:8080/prefix"),
    ("http://[::1]:8080", "http://[::1]:8080"),
    ("http://stt_proxy:8080/", "http://stt_proxy:8080"),
])
def test_endpoint_naming_the_method_is_normalised(endpoint, base):
    assert Settings.from_mapping({"endpoint": endpoint}, env={}).endpoint == base


def test_endpoint_credentials_never_shown(caplog):
    import logging
    caplog.set_level(logging.DEBUG)
    s = Settings.from_mapping({"key": "k", "endpoint": f"http://user:{SECRET}@proxy.lan:3128/stt"}, env={})
    assert s.endpoint == f"http://user:{SECRET}@proxy.lan:3128/stt"          # still used for requests
    assert s.endpoint_shown == "http://***@proxy.lan:3128/stt"
    assert SECRET not in repr(s) and "proxy.lan" in repr(s)
    assert "plain http" in caplog.text and SECRET not in caplog.text and "user:" not in caplog.text
    with pytest.raises(ConfigError) as info:
        Settings.from_mapping({"endpoint": f"http://user:{SECRET}@proxy.lan:99999"}, env={})
    assert SECRET not in str(info.value)
