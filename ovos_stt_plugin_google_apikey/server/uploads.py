"""What the server reads from a request: audio in any of its forms, the language, and the
answer (a Refusal) for whatever goes wrong. No app, no routes."""
from __future__ import annotations

import base64
import binascii
import json
import math
import re
from typing import Any, Dict, Optional, Tuple

from fastapi import Request
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from .. import audio as audio_mod
from .. import decoding, errors

# Per request: voice commands last seconds, dictation a minute or two. Longer uploads are
# refused (413) from the header or while decoding, before memory or Google's bill grows.
DEFAULT_MAX_AUDIO_SECONDS = 120.0
# A BCP-47-like tag (en-US, cmn-Hans-CN, pt_BR) or "auto"; anything else is a 400.
LANG_TAG = re.compile(r"auto|[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{1,8}){0,4}")
MAX_LANG_CHARS = 35
NO_WHITESPACE = str.maketrans("", "", " \t\r\n")
MAX_LINE = 600           # characters of one answer's (or log line's) reason
# Bodies this small are decoded on the event loop when that costs about a copy (raw PCM and
# 16- to 32-bit PCM WAVs; 8-bit, A-law and mu-law up to a quarter of it): 0.03-0.06 ms for
# 1 MiB, 0.17 ms for 256 KiB of mu-law, against 0.16-0.44 ms for the hop to a worker thread
# (bench/inline_decode.py). Float WAVs and compressed formats go to a thread, and so does
# parsing a /stt/json body past INLINE_JSON_BYTES (8 ms for 1 MiB, 0.4 ms for 64 KiB).
INLINE_DECODE_BYTES = 1024 * 1024
INLINE_JSON_BYTES = 64 * 1024


def printable(text: str, limit: int = MAX_LINE) -> str:
    """``text`` as one line fit for a log or an answer: control characters (C0, C1, DEL,
    line and paragraph separators) escaped, and cut at ``limit`` characters."""
    if not text.isprintable():
        text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return text if len(text) <= limit else text[:limit - 1] + "…"


class Refusal(Exception):
    """An answer other than 200: the status, one line saying why, and extra headers."""

    def __init__(self, status: int, message: str, headers: Optional[Dict[str, str]] = None) -> None:
        super().__init__(message)
        self.status = status
        # one line, whatever Google's (or a client's) text held
        self.message = printable(" ".join(message.split()))
        self.headers = headers or {}


async def read_audio(request: Request, lang: Optional[str], rate: Optional[int],
                     width: Optional[int], max_seconds: Optional[float] = DEFAULT_MAX_AUDIO_SECONDS,
                     ) -> Tuple[audio_mod.PCM, Optional[str]]:
    """The audio and language of /stt or /lang_detect: a file, raw PCM or a multipart upload.
    ``lang``, ``rate`` and ``width`` are the query's, parsed; a form's 'lang' wins.

    A large or compressed body is decoded on a worker thread, so the event loop keeps serving."""
    content_type = request.headers.get("content-type")
    if (content_type or "").lower().startswith("multipart/form-data"):
        data, form_lang, content_type = await _read_form(request)
        lang = parse_lang(form_lang) or lang          # a bad tag is refused before decoding
    else:
        data = await request.body()
    return await _decode_soon(data, rate, width, content_type, max_seconds), lang


async def _decode_soon(data: bytes, rate: Any, width: Any, content_type: Optional[str],
                       max_seconds: Optional[float]) -> audio_mod.PCM:
    """_decode on the event loop when that is quick, else on a worker thread."""
    if decoding.decodes_quickly(data, INLINE_DECODE_BYTES):
        return _decode(data, rate, width, content_type, max_seconds)
    return await run_in_threadpool(_decode, data, rate, width, content_type, max_seconds)


async def _read_form(request: Request) -> Tuple[bytes, Optional[str], Optional[str]]:
    """The 'audio' file, its content type and the 'lang' field of a multipart upload (curl -F)."""
    try:
        form = await request.form()
    except HTTPException as exc:                 # Starlette's own 400 for a malformed body
        raise Refusal(400, f"malformed multipart body: {exc.detail}") from exc
    except ValueError as exc:   # older Starlette lets python-multipart's FormParserError through
        raise Refusal(400, f"malformed multipart body: {exc}") from exc
    try:
        upload, lang = form.get("audio"), form.get("lang")
        if not isinstance(upload, UploadFile):
            raise Refusal(400, "a multipart upload needs the audio file in the field 'audio'")
        if lang is not None and not isinstance(lang, str):
            raise Refusal(400, "the multipart field 'lang' must be text, e.g. en-US")
        return await upload.read(), lang, upload.content_type
    finally:
        await form.close()


async def read_json_audio(request: Request, default_lang: Optional[str],
                          max_seconds: Optional[float] = DEFAULT_MAX_AUDIO_SECONDS,
                          ) -> Tuple[audio_mod.PCM, Optional[str]]:
    """The audio and language of a /stt/json body (one past 64 KiB parsed on a worker thread,
    its audio decoded as read_audio's is)."""
    body = await request.body()
    if len(body) <= INLINE_JSON_BYTES:
        payload = _json_audio(body, default_lang)
    else:
        payload = await run_in_threadpool(_json_audio, body, default_lang)
    data, lang, rate, width = payload
    return await _decode_soon(data, rate, width, None, max_seconds), lang


def _json_audio(body: bytes, default_lang: Optional[str]) -> Tuple[bytes, Optional[str], Any, Any]:
    """The audio bytes, language, sample_rate and sample_width of a /stt/json body."""
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError) as exc:  # ValueError: also bad UTF-8
        raise Refusal(400, f"the body must be a JSON object: {exc}") from exc
    if not isinstance(payload, dict) or not isinstance(payload.get("audio_b64"), str):
        raise Refusal(400, "the body must be a JSON object with 'audio_b64' (base64 audio)")
    try:
        # `base64 file` wraps its lines at 76 characters: white space is not data
        data = base64.b64decode(payload["audio_b64"].translate(NO_WHITESPACE), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise Refusal(400, f"'audio_b64' is not valid base64: {exc}") from exc
    lang = payload.get("lang")
    if lang is not None and not isinstance(lang, str):
        raise Refusal(400, "'lang' must be a language tag such as en-US")
    return data, parse_lang(lang) or default_lang, payload.get("sample_rate"), payload.get("sample_width")


def _decode(data: bytes, rate: Any, width: Any, content_type: Optional[str],
            max_seconds: Optional[float]) -> audio_mod.PCM:
    """The audio by decoding's rule (a file by its header, else raw PCM, 16000 Hz and 2 bytes
    unless given), within the budget.

    Raises Refusal(400) for a bad parameter or no audio; AudioError subclasses otherwise.
    """
    pcm = decoding.decode(data, content_type=content_type, sample_rate=whole_number(rate, "sample_rate"),
                          sample_width=whole_number(width, "sample_width"), max_seconds=max_seconds)
    if not pcm.data:
        raise Refusal(400, "the request carries no audio")
    return pcm


def whole_number(value: Any, name: str) -> Optional[int]:
    """A whole-number parameter (text from a query, a number from JSON); None when absent."""
    if value is None or value == "":
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) < 10:
        return int(value)
    raise Refusal(400, f"'{name}' must be a whole number; got {str(value)[:20]!r}")


def parse_lang(value: Optional[str]) -> Optional[str]:
    """A language tag as given, None when absent. Raises Refusal(400) for anything else."""
    if value is None or value == "":
        return None
    if len(value) > MAX_LANG_CHARS or not LANG_TAG.fullmatch(value):
        raise Refusal(400, f"'lang' must be a language tag such as en-US; got {value[:40]!r}")
    return value


def parse_candidates(given: Optional[str]) -> list:
    """/lang_detect's valid_langs (comma-separated, repeated ones already joined)."""
    valid = [v for v in (parse_lang(v.strip()) for v in (given or "").split(",")) if v]
    if not valid:
        raise Refusal(400, "valid_langs is required, e.g. ?valid_langs=en-US,pt-PT")
    if "auto" in valid:
        raise Refusal(400, "valid_langs names the languages to choose from, e.g. en-US,pt-PT; "
                           "'auto' is not one")
    return valid


def too_large(limit: int) -> Refusal:
    # Connection: close, or uvicorn would go on reading (and dropping) the rest of the upload.
    return Refusal(413, f"the body is larger than {limit} bytes, the most this server takes",
                   {"Connection": "close"})


def refusal_for(exc: Exception) -> Optional[Refusal]:
    """The answer for an exception; None for an unexpected one (a 500)."""
    if isinstance(exc, Refusal):
        return exc
    if isinstance(exc, ClientDisconnect):
        return Refusal(400, "the client went away before the body was sent")
    if isinstance(exc, errors.UnsupportedAudioError):
        return Refusal(415, str(exc))
    if isinstance(exc, errors.AudioTooLongError):
        return Refusal(413, f"{exc}: the most this server takes per request (--max-audio-seconds)")
    if isinstance(exc, (errors.AudioError, errors.ConfigError)):   # ConfigError: bad candidates
        return Refusal(400, str(exc))
    if isinstance(exc, NotImplementedError):
        return Refusal(501, f"language detection is not available: {exc}")
    if isinstance(exc, errors.DeadlineError):
        return Refusal(504, str(exc))
    if isinstance(exc, (errors.UnavailableError, errors.QuotaError)):
        wait = exc.retry_after
        return Refusal(503, str(exc), {"Retry-After": str(math.ceil(wait))} if wait is not None else {})
    if isinstance(exc, errors.APIError):           # credentials, request rejected
        return Refusal(502, str(exc))
    return None
