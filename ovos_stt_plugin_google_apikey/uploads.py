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
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from . import audio as audio_mod
from . import errors

FILE_MAGIC = (b"RIFF", b"fLaC", b"OggS")       # a file header wins over sample_rate/sample_width
# A BCP-47-like tag (en-US, cmn-Hans-CN, pt_BR) or "auto"; anything else is a 400.
LANG_TAG = re.compile(r"auto|[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{1,8}){0,4}")
MAX_LANG_CHARS = 35


class Refusal(Exception):
    """An answer other than 200: the status, one line saying why, and extra headers."""

    def __init__(self, status: int, message: str, headers: Optional[Dict[str, str]] = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = " ".join(message.split())      # one line, whatever Google's text held
        self.headers = headers or {}


async def read_audio(request: Request, default_lang: Optional[str]) -> Tuple[audio_mod.PCM, Optional[str]]:
    """The audio and language of /stt or /lang_detect: a file, raw PCM or a multipart upload."""
    lang = request.query_params.get("lang")
    if request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
        data, form_lang = await _read_form(request)
        lang = form_lang or lang
    else:
        data = await request.body()
    params = request.query_params
    return _decode(data, params.get("sample_rate"), params.get("sample_width")), parse_lang(lang) or default_lang


async def _read_form(request: Request) -> Tuple[bytes, Optional[str]]:
    """The 'audio' file and 'lang' field of a multipart upload (what curl -F sends)."""
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
        return await upload.read(), lang
    finally:
        await form.close()


def read_json_audio(body: bytes, default_lang: Optional[str]) -> Tuple[audio_mod.PCM, Optional[str]]:
    """The audio and language of a /stt/json body."""
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError) as exc:  # ValueError: also bad UTF-8
        raise Refusal(400, f"the body must be a JSON object: {exc}") from exc
    if not isinstance(payload, dict) or not isinstance(payload.get("audio_b64"), str):
        raise Refusal(400, "the body must be a JSON object with 'audio_b64' (base64 audio)")
    try:
        data = base64.b64decode(payload["audio_b64"], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise Refusal(400, f"'audio_b64' is not valid base64: {exc}") from exc
    lang = payload.get("lang")
    if lang is not None and not isinstance(lang, str):
        raise Refusal(400, "'lang' must be a language tag such as en-US")
    pcm = _decode(data, payload.get("sample_rate"), payload.get("sample_width"))
    return pcm, parse_lang(lang) or default_lang


def _decode(data: bytes, rate: Any, width: Any) -> audio_mod.PCM:
    """A WAV/FLAC/Ogg file by its header, else raw PCM (16000 Hz, 2 bytes unless given).

    Raises Refusal(400) for a bad parameter; AudioError for audio that does not decode.
    """
    sample_rate, sample_width = _whole(rate, "sample_rate"), _whole(width, "sample_width")
    if data[:4] in FILE_MAGIC or (sample_rate is None and sample_width is None):
        pcm = audio_mod.from_bytes(data)
    else:
        pcm = audio_mod.from_raw(  # 0 is a bad value, not "the default"
            data, audio_mod.RAW_RATE if sample_rate is None else sample_rate,
            audio_mod.RAW_WIDTH if sample_width is None else sample_width)
    if not pcm.data:
        raise Refusal(400, "the request carries no audio")
    return pcm


def _whole(value: Any, name: str) -> Optional[int]:
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
