"""The server's options: one frozen value owns every limit, its default, its validation and its
command-line form. The CLI builds `serve`'s flags from ``ServerOptions.fields()``; workers get the
same value (token included), so nothing is declared or read twice."""
from __future__ import annotations

import dataclasses
import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple

from .uploads import DEFAULT_MAX_AUDIO_SECONDS, LANG_TAG

MiB = 1024 * 1024
# A bearer token as a client can send it: token68-ish, printable ASCII without spaces.
TOKEN_CHARS = re.compile(r"[\x21-\x7e]+")
MAX_TOKEN_CHARS = 4096
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]")


def _flag(help: str, metavar: Optional[str] = None, many: bool = False, low: int = 0) -> Dict[str, Any]:
    """A field's command-line form; ``low`` is a whole number's least value."""
    return {"help": help, "metavar": metavar, "many": many, "low": low}


@dataclass(frozen=True)
class ServerOptions:
    """Every limit of one server process. Raises ValueError for a bad one (the CLI turns that
    into a ConfigError naming the option)."""

    token: Optional[str] = field(default=None, repr=False)   # never in logs or reprs
    default_lang: Optional[str] = None
    # Google calls in flight at once. A worker is a thread that mostly waits on Google (~1 s),
    # so hundreds cost little: bench/capacity.py measures the memory per request in flight.
    workers: int = field(default=256, metadata=_flag(
        "Google requests in flight at once, per process", low=1))
    queue: int = field(default=64, metadata=_flag(
        "whole requests waiting beyond those; more get 503"))
    max_body: int = field(default=10 * MiB, metadata=_flag("largest request body", "BYTES", low=1))
    body_idle: float = field(default=5.0, metadata=_flag(
        "an upload silent this long gets 408", "SECONDS"))
    body_timeout: float = field(default=60.0, metadata=_flag(
        "an upload not complete after this long gets 408", "SECONDS"))
    min_rate: int = field(default=4096, metadata=_flag(
        "after its first --body-idle seconds, an upload bringing fewer bytes a second than this "
        "over any --body-idle seconds gets 408", "BYTES"))
    max_buffered: int = field(default=64 * MiB, metadata=_flag(
        "bytes of request bodies held at once, per process; past it the slowest uploads make "
        "room or get 503", "BYTES", low=1))
    max_audio_seconds: float = field(default=DEFAULT_MAX_AUDIO_SECONDS, metadata=_flag(
        "longest audio one request may carry; longer gets 413 before it is decoded or sent",
        "SECONDS"))
    max_connections: int = field(default=4096, metadata=_flag(
        "open client connections per process (lowered to 3/4 of the open-file limit); past it "
        "the longest-idle one is closed", "N", low=16))
    header_timeout: float = field(default=5.0, metadata=_flag(
        "a connection that has not sent a whole request header this long after opening (or "
        "after its last answer) is closed", "SECONDS"))
    allow_origin: Tuple[str, ...] = field(default=(), metadata=_flag(
        "a web origin (https://example.org) whose pages may call the server from a browser; "
        "repeatable; '*' allows any", "ORIGIN", many=True))
    allow_host: Tuple[str, ...] = field(default=(), metadata=_flag(
        "a Host header answered besides localhost/127.0.0.1/[::1] when listening on loopback "
        "(DNS-rebinding guard); repeatable; '*' allows any", "HOST", many=True))
    forwarded_allow_ips: Tuple[str, ...] = field(default=(), metadata=_flag(
        "a proxy address (or network) whose X-Forwarded-For/-Proto is believed; repeatable", "ADDRESS", many=True))

    def __post_init__(self) -> None:
        self._check_numbers()
        self._check_texts()

    def _check_numbers(self) -> None:
        for option in self.fields():
            if not isinstance(option.default, int):
                continue
            name, low = option.name, option.metadata["low"]
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"{_option(name)} must be a whole number of at least {low}; got {value!r}")
        for name in ("body_idle", "body_timeout", "max_audio_seconds", "header_timeout"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0 < value < float("inf"):
                raise ValueError(f"{_option(name)} must be over 0 seconds; got {value!r}")
        if self.max_buffered < self.max_body:
            raise ValueError(f"--max-buffered ({self.max_buffered}) must be at least --max-body "
                             f"({self.max_body})")

    def _check_texts(self) -> None:
        if self.default_lang is not None and not LANG_TAG.fullmatch(self.default_lang):
            raise ValueError(f"--lang must be a language tag such as en-US; got {self.default_lang!r}")
        if self.token is not None:
            check_token(self.token)
        for network in self.forwarded_allow_ips:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError:
                raise ValueError(f"--forwarded-allow-ips must be an address or network such as "
                                 f"192.168.1.10; got {network!r}") from None

    @classmethod
    def fields(cls) -> Tuple[dataclasses.Field, ...]:
        """The fields that are command-line options (all but the token and the language)."""
        return tuple(f for f in dataclasses.fields(cls) if f.metadata)

    def with_(self, **changes: Any) -> "ServerOptions":
        return dataclasses.replace(self, **changes)

    def to_json(self) -> Dict[str, Any]:
        """For a worker process (the token included: it is read once, here)."""
        return {f.name: list(v) if isinstance(v, tuple) else v
                for f in dataclasses.fields(self) for v in [getattr(self, f.name)]}

    @classmethod
    def from_json(cls, data: Dict[str, Any]) -> "ServerOptions":
        given: Dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return cls(**given)


def check_token(token: str) -> str:
    """``token`` if a client can send it as ``Authorization: Bearer <token>``; else ValueError."""
    if not TOKEN_CHARS.fullmatch(token) or len(token) > MAX_TOKEN_CHARS:
        raise ValueError("the server token must be one line of printable ASCII without spaces "
                         f"(at most {MAX_TOKEN_CHARS} characters): clients send it in an HTTP "
                         "header, which carries nothing else")
    return token


def _option(name: str) -> str:
    return "--" + name.replace("_", "-")
