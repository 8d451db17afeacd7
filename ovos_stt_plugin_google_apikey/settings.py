"""The one reader of the plugin's settings: mycroft.conf section, then environment."""
from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from typing import Any, Mapping, Optional, Tuple
from urllib.parse import urlsplit

from .errors import ConfigError
from .log import ModuleLog

LOG = ModuleLog(__name__)

ENCODINGS = ("linear16", "flac", "ogg_opus")

KEY_ENV_VARS = ("GOOGLE_STT_API_KEY", "STT_PW")
DEFAULT_ENDPOINT = "https://speech.googleapis.com"
# v1 models per cloud_speech.proto, plus the telephony names Google's console offers.
MODELS = ("latest_short", "latest_long", "command_and_search", "default", "phone_call",
          "video", "telephony", "telephony_short", "medical_conversation", "medical_dictation")
MAX_PHRASES = 5000          # Google's adaptation limits
MAX_PHRASE_CHARS = 100
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
# Keys that OVOS's get_plugin_config merges into every plugin's section; not ours, not errors.
OVOS_MERGED_KEYS = frozenset({"module", "fallback_module", "lang", "verify_ssl",
                              "sample_rate", "sample_width"})


@dataclass(frozen=True)
class Settings:
    """Validated plugin settings; see README's configuration table."""

    key: str = field(default="", repr=False)   # the secret: never in repr, logs or errors
    lang: Optional[str] = None
    endpoint: str = DEFAULT_ENDPOINT
    model: Optional[str] = "latest_short"
    use_enhanced: bool = False
    punctuation: bool = True
    profanity_filter: bool = False
    phrases: Tuple[str, ...] = ()
    boost: Optional[float] = None
    max_alternatives: int = 3
    timeout: float = 10.0
    retries: int = 2
    encoding: str = "linear16"
    max_workers: int = 4
    auto_languages: Tuple[str, ...] = ()
    progressive_upload: bool = True

    @property
    def has_key(self) -> bool:
        return bool(self.key)

    @classmethod
    def from_mapping(cls, config: Optional[Mapping[str, Any]] = None,
                     env: Mapping[str, str] = os.environ) -> "Settings":
        """Build settings from a plugin config section, falling back to env for the key.

        Raises ConfigError naming the setting and what is allowed.
        """
        config = dict(config or {})
        known = {f.name for f in fields(cls)}
        for name in sorted(set(config) - known - OVOS_MERGED_KEYS):
            LOG.debug("ignoring unknown setting %r", name)
        key = config.get("key") or next((env[v] for v in KEY_ENV_VARS if env.get(v)), "")
        if not isinstance(key, str):
            raise ConfigError("'key' must be a string (your Google API key)")
        values = {
            "key": key.strip(),
            "lang": _optional_str(config, "lang"),
            "endpoint": _endpoint(config.get("endpoint", DEFAULT_ENDPOINT)),
            "model": _model(config.get("model", "latest_short")),
            "use_enhanced": _bool(config, "use_enhanced", False),
            "punctuation": _bool(config, "punctuation", True),
            "profanity_filter": _bool(config, "profanity_filter", False),
            "phrases": _phrases(config.get("phrases", ())),
            "boost": _number(config, "boost", None, 0, 20),
            "max_alternatives": int(_number(config, "max_alternatives", 3, 1, 30, integer=True)),
            "timeout": _number(config, "timeout", 10.0, 0.5, 300),
            "retries": int(_number(config, "retries", 2, 0, 10, integer=True)),
            "encoding": _choice(config, "encoding", "linear16", ENCODINGS),
            "max_workers": int(_number(config, "max_workers", 4, 1, 16, integer=True)),
            "auto_languages": _strings(config, "auto_languages"),
            "progressive_upload": _bool(config, "progressive_upload", True),
        }
        return cls(**values)


def _optional_str(config: Mapping[str, Any], name: str) -> Optional[str]:
    value = config.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ConfigError(f"'{name}' must be a string; got {value!r}")
    return value


def _bool(config: Mapping[str, Any], name: str, default: bool) -> bool:
    value = config.get(name, default)
    if not isinstance(value, bool):
        raise ConfigError(f"'{name}' must be true or false; got {value!r}")
    return value


def _number(config: Mapping[str, Any], name: str, default: Any, low: float, high: float,
            integer: bool = False) -> Any:
    value = config.get(name, default)
    if value is None and default is None:
        return None
    kind = "a whole number" if integer else "a number"
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or (integer and not float(value).is_integer()):
        raise ConfigError(f"'{name}' must be {kind} from {low:g} to {high:g}; got {value!r}")
    if not low <= value <= high:
        raise ConfigError(f"'{name}' must be {kind} from {low:g} to {high:g}; got {value!r}")
    return value


def _choice(config: Mapping[str, Any], name: str, default: str, allowed: Tuple[str, ...]) -> str:
    value = config.get(name, default)
    if value not in allowed:
        raise ConfigError(f"'{name}' must be one of {', '.join(allowed)}; got {value!r}")
    return value


def _strings(config: Mapping[str, Any], name: str) -> Tuple[str, ...]:
    value = config.get(name) or ()
    if isinstance(value, str) or not isinstance(value, (list, tuple)) \
            or not all(isinstance(v, str) and v.strip() for v in value):
        raise ConfigError(f"'{name}' must be a list of language tags such as [\"en-US\", \"pt-PT\"]; "
                          f"got {value!r}")
    return tuple(value)


def _endpoint(value: Any) -> str:
    allowed = ("'endpoint' must be an http(s) base URL such as "
               f"{DEFAULT_ENDPOINT} or https://eu-speech.googleapis.com")
    if not isinstance(value, str):
        raise ConfigError(f"{allowed}; got {value!r}")
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise ConfigError(f"{allowed}; got {value!r}")
    if parts.scheme == "http" and parts.hostname not in LOOPBACK_HOSTS:
        LOG.warning("endpoint %s is plain http: the API key crosses the network unencrypted",
                    f"http://{parts.netloc}")
    return value.strip().rstrip("/")


def _model(value: Any) -> Optional[str]:
    if value is None or value == "":
        return None
    if value not in MODELS:
        raise ConfigError(f"'model' must be one of {', '.join(MODELS)} (or null to let Google "
                          f"choose); got {value!r}")
    return value


def _phrases(value: Any) -> Tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise ConfigError(f"'phrases' must be a list of strings; got {value!r}")
    if len(value) > MAX_PHRASES:
        raise ConfigError(f"'phrases' may hold at most {MAX_PHRASES} entries; got {len(value)}")
    for phrase in value:
        if not isinstance(phrase, str) or not phrase.strip() or len(phrase) > MAX_PHRASE_CHARS:
            raise ConfigError(f"each of 'phrases' must be a non-empty string of at most "
                              f"{MAX_PHRASE_CHARS} characters; got {phrase!r}")
    return tuple(value)
