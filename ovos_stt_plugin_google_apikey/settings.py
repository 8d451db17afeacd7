"""The one reader of the plugin's settings: mycroft.conf section, then environment."""
from __future__ import annotations

import base64
import os
import re
from dataclasses import dataclass, field, fields
from typing import Any, Dict, Mapping, Optional, Tuple
from urllib.parse import unquote, urlsplit, urlunsplit

from .errors import ConfigError
from .log import ModuleLog
from .wire import RECOGNIZE_PATH

LOG = ModuleLog(__name__)

ENCODINGS = ("linear16", "flac", "ogg_opus")

# The plugin id: the mycroft.conf section, the entry point (setup.py), the server's /status.
PLUGIN_ID = "ovos-stt-plugin-google-apikey"
KEY_ENV_VARS = ("GOOGLE_STT_API_KEY", "STT_PW")
DEFAULT_ENDPOINT = "https://speech.googleapis.com"
# RFC 9110 token characters: what a header value can carry as it is. Google keys are
# AIza + 35 of [A-Za-z0-9_-]; proxies and compatible servers may use others.
KEY_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
HOST_NAME = re.compile(r"[A-Za-z0-9_-]{1,63}(?:\.[A-Za-z0-9_-]{1,63})*\.?")
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
    # May hold user:password@ for a proxy; shown only as ``endpoint_shown``.
    endpoint: str = field(default=DEFAULT_ENDPOINT, repr=False)
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

    def body_options(self) -> Dict[str, Any]:
        """The settings that go into every recognize body, as wire.build_recognize_body's
        keyword arguments."""
        return {"max_alternatives": self.max_alternatives, "punctuation": self.punctuation,
                "profanity_filter": self.profanity_filter, "use_enhanced": self.use_enhanced,
                "phrases": self.phrases, "boost": self.boost}

    @property
    def has_key(self) -> bool:
        return bool(self.key)

    @property
    def endpoint_shown(self) -> str:
        """The endpoint with any user:password replaced by ***, for messages and logs."""
        return redact_url(self.endpoint)

    @property
    def secrets(self) -> Tuple[str, ...]:
        """What must never be shown: the key and the endpoint's password (the user name is
        redacted from the endpoint shown, but not hunted in free text, where it may be a word)."""
        parts = urlsplit(self.endpoint)
        found = [self.key, parts.password or ""]
        if parts.password:      # as sent: Authorization: Basic base64(user:password), e.g. echoed by a proxy
            pair = f"{unquote(parts.username or '')}:{unquote(parts.password)}"
            found.append(base64.b64encode(pair.encode("latin-1", "replace")).decode("ascii"))
        return tuple(s for s in found if len(s) >= 3)

    def __repr__(self) -> str:
        shown = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in fields(self) if f.repr)
        return f"Settings(endpoint={self.endpoint_shown!r}, {shown})"

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
        source = "'key'" if config.get("key") else next(
            (v for v in KEY_ENV_VARS if env.get(v)), "'key'")
        key = config.get("key") or env.get(source, "")
        default: Dict[str, Any] = {f.name: f.default for f in fields(cls)}   # defaults live there only
        values = {
            "key": _key(key, source),
            "lang": _optional_str(config, "lang"),
            "endpoint": _endpoint(config.get("endpoint", default["endpoint"])),
            "model": _model(config.get("model", default["model"])),
            "use_enhanced": _bool(config, "use_enhanced", default["use_enhanced"]),
            "punctuation": _bool(config, "punctuation", default["punctuation"]),
            "profanity_filter": _bool(config, "profanity_filter", default["profanity_filter"]),
            "phrases": _phrases(config.get("phrases", default["phrases"])),
            "boost": _number(config, "boost", default["boost"], 0, 20),
            "max_alternatives": int(_number(config, "max_alternatives", default["max_alternatives"],
                                            1, 30, integer=True)),
            "timeout": _number(config, "timeout", default["timeout"], 0.5, 300),
            "retries": int(_number(config, "retries", default["retries"], 0, 10, integer=True)),
            "encoding": _choice(config, "encoding", default["encoding"], ENCODINGS),
            "max_workers": int(_number(config, "max_workers", default["max_workers"], 1, 16,
                                       integer=True)),
            "auto_languages": _strings(config, "auto_languages"),
            "progressive_upload": _bool(config, "progressive_upload", default["progressive_upload"]),
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


def _key(value: Any, source: str) -> str:
    """The key without surrounding whitespace; ConfigError (never showing it) if it cannot
    be sent as a header value."""
    if not isinstance(value, str):
        raise ConfigError(f"{source} must be a string (your Google API key)")
    key = value.strip()
    if not key or KEY_TOKEN.fullmatch(key):
        return key
    if any(c in "\r\n" for c in key):
        what = "more than one line (e.g. a comment after the key)"
    elif any(c.isspace() for c in key):
        what = "a space inside it"
    elif not key.isascii():
        what = "a non-ASCII character"
    elif not key.isprintable():
        what = "a control character"
    else:
        what = "a character that cannot be sent in an HTTP header (quotes, brackets, ...)"
    raise ConfigError(f"{source} is not a usable API key: it holds {what}. A Google API key is "
                      "one word of letters, digits, '-' and '_' (a standard key starts with AIza); "
                      "set exactly the key (it is not shown here)")


def redact_url(url: str) -> str:
    """``url`` with any user:password, query and fragment replaced by *** (Google's own docs
    show the key as ``?key=``)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<an unparsable URL>"
    if "@" in parts.netloc:
        parts = parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2])
    return urlunsplit(parts._replace(query="***" if parts.query else "",
                                     fragment="***" if parts.fragment else ""))


def _endpoint(value: Any) -> str:
    """A base URL, checked in full now rather than at the first request."""
    allowed = ("'endpoint' must be an http(s) base URL such as "
               f"{DEFAULT_ENDPOINT} or https://eu-speech.googleapis.com")
    if not isinstance(value, str):
        raise ConfigError(f"{allowed}; got {value!r}")
    value = value.strip()
    shown = redact_url(value)
    if not value.isprintable() or any(c.isspace() for c in value) or not value.isascii():
        raise ConfigError(f"{allowed}, with no spaces, control or non-ASCII characters "
                          f"(write a non-ASCII host name in its xn-- form); got {shown!r}")
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as exc:       # "[::1" or a port that is not 0-65535
        raise ConfigError(f"{allowed}; got {shown!r} ({exc})") from None
    if parts.query or parts.fragment or "?" in value or "#" in value:
        raise ConfigError(f"{allowed}, with no query or fragment (the key belongs in 'key' or "
                          f"GOOGLE_STT_API_KEY, and is sent in a header); got {shown!r}")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{allowed}; got {shown!r}")
    if port == 0:
        raise ConfigError(f"'endpoint' has port 0; give a port from 1 to 65535; got {shown!r}")
    if not (parts.netloc.rpartition("@")[2].startswith("[") or HOST_NAME.fullmatch(parts.hostname)):
        raise ConfigError(f"'endpoint' has an invalid host name {parts.hostname!r}; got {shown!r}")
    path = parts.path.rstrip("/")
    if path.endswith(RECOGNIZE_PATH):
        LOG.info("'endpoint' names the method; using its base %s (the plugin appends %s)",
                 redact_url(value[: value.rfind(RECOGNIZE_PATH)]), RECOGNIZE_PATH)
        path = path[: -len(RECOGNIZE_PATH)]
    elif ":" in path or re.search(r"/v\d[a-z0-9]*$", path):
        raise ConfigError(f"'endpoint' is the base URL, without the API version or method (the "
                          f"plugin appends {RECOGNIZE_PATH}): e.g. {DEFAULT_ENDPOINT} or "
                          f"http://host:port/prefix; got {shown!r}")
    if parts.scheme == "http" and parts.hostname not in LOOPBACK_HOSTS:
        LOG.warning("endpoint %s is plain http: the API key crosses the network unencrypted",
                    shown)
    return urlunsplit(parts._replace(path=path)).rstrip("/")


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
