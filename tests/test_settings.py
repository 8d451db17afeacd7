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
