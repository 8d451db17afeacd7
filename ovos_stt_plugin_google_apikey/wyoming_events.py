"""Wyoming events as this server reads them: bounded, validated, each failure a typed error;
and the audio they carry as the 16-bit mono the streaming plugin sends. No I/O but the reader."""
from __future__ import annotations

import asyncio
import json
import re
from typing import Any, Dict, Optional, Tuple

from wyoming.event import Event

from . import audio as audio_mod
from .errors import AudioError, ConfigError, GoogleSTTError

HEADER_LIMIT = 64 * 1024        # asyncio's StreamReader line limit, which the servers keep
MAX_DATA = 64 * 1024            # an event's extra JSON (data_length)
MAX_PAYLOAD = 1024 * 1024       # one audio chunk: 5 s of 48 kHz 16-bit stereo
LANG_TAG = re.compile(r"[A-Za-z]{2,8}([-_][A-Za-z0-9]{1,8}){0,4}")


class ProtocolError(GoogleSTTError):
    """The client broke the Wyoming protocol: a malformed event, audio out of order."""


def stream_rate(rate: int) -> int:
    """The rate sent to Google for audio at ``rate``: the same when Google takes it."""
    return rate if audio_mod.GOOGLE_MIN_RATE <= rate <= audio_mod.GOOGLE_MAX_RATE \
        else audio_mod.FALLBACK_RATE


def convert(data: bytes, fmt: Tuple[int, int, int], rate: int) -> bytes:
    """Whole frames of PCM in ``fmt`` (rate, width, channels) as 16-bit mono at ``rate``."""
    pcm = audio_mod.to_linear16(audio_mod.from_raw(data, *fmt))
    return audio_mod.resample(pcm, rate).data


async def read_event(reader: asyncio.StreamReader, max_payload: int) -> Optional[Event]:
    """The next event, None when the client has gone; ProtocolError for a malformed one (the
    wyoming package's reader would wait for, and buffer, any payload_length it is given)."""
    try:
        line = await reader.readline()
    except ValueError as exc:                     # asyncio's LimitOverrunError, via readline
        raise ProtocolError(f"an event header longer than {HEADER_LIMIT} bytes") from exc
    if not line.endswith(b"\n"):
        return None
    try:
        header = json.loads(line)
    except ValueError as exc:
        raise ProtocolError("an event header that is not JSON: send one JSON object per line") from exc
    if not isinstance(header, dict) or not isinstance(header.get("type"), str):
        raise ProtocolError("an event header must be a JSON object with a string 'type'")
    data = header.get("data") or {}
    if not isinstance(data, dict):
        raise ProtocolError("an event's 'data' must be a JSON object")
    data_length = _length(header, "data_length", MAX_DATA)
    payload_length = _length(header, "payload_length", max_payload)
    try:
        if data_length:
            extra = json.loads(await reader.readexactly(data_length))
            if not isinstance(extra, dict):
                raise ProtocolError("an event's extra data must be a JSON object")
            data.update(extra)
        payload = await reader.readexactly(payload_length) if payload_length else None
    except asyncio.IncompleteReadError:
        return None
    except ValueError as exc:
        raise ProtocolError("an event's extra data is not JSON") from exc
    return Event(type=header["type"], data=data, payload=payload)


def _length(header: Dict[str, Any], name: str, limit: int) -> int:
    value = header.get(name) or 0
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ProtocolError(f"'{name}' must be a whole number of bytes; got {value!r:.50}")
    if value > limit:
        raise ProtocolError(f"'{name}' of {value} bytes: at most {limit} in one event")
    return value


def audio_format(data: Dict[str, Any]) -> Tuple[int, int, int]:
    """(rate, width, channels) of an audio event; AudioError when they are not usable."""
    try:
        fmt = tuple(data[name] for name in ("rate", "width", "channels"))
    except KeyError as exc:
        raise ProtocolError(f"an audio event without '{exc.args[0]}'") from exc
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in fmt):
        raise AudioError(f"rate, width and channels must be whole numbers; got {fmt!r:.80}")
    audio_mod.PCM(b"", *fmt)                      # AudioError for a rate/width/channels we cannot use
    return fmt  # type: ignore[return-value]


def language(value: Any) -> Optional[str]:
    """Transcribe's language: None (the configured one) or a tag; ConfigError otherwise."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not (value == "auto" or LANG_TAG.fullmatch(value)):
        raise ConfigError(f"the language must be a tag such as en-US or pt-PT; got {value!r:.60}")
    return value
