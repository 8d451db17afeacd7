"""The server contract as OpenAPI: what each route reads and answers, for FastAPI's schema.

The STT routes read their own request (uploads.py): the body is streamed under a size limit
and must not be parsed by FastAPI first, so bodies are declared here with ``openapi_extra`` and
the answers with ``responses``. Query parameters are declared once, as ``Param``s: the same
declaration is the schema and the parser (``read_query``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from pydantic import BaseModel, Field

from .uploads import (
    LANG_TAG,
    MAX_LANG_CHARS,
    parse_candidates,
    parse_lang,
    whole_number,
)

# uploads.LANG_TAG, anchored, empty allowed (an empty lang means "the default")
LANG_PATTERN = rf"^({LANG_TAG.pattern})?$"
BINARY = {"type": "string", "format": "binary"}
TEXT = {"text/plain": {"schema": {"type": "string"}}}
METRICS_MEDIA_TYPE = "text/plain"


class Transcript(BaseModel):
    """What /stt/json answers."""

    text: str = Field(description='the transcript; "" when no speech was heard')
    lang: str = Field(description="the language Google heard (or was asked for)")


class Detection(BaseModel):
    """What /lang_detect answers."""

    lang: str = Field(description="the candidate Google heard best, as given")
    conf: float = Field(description="the transcript's confidence (0.5 when Google gives none)")


class Totals(BaseModel):
    """This process's counts since it started."""

    since: int = Field(description="start time, seconds since the epoch")
    requests: int = Field(description="STT requests answered (any status)")
    audio_seconds: float = Field(description="seconds of audio received")
    billed_seconds: float = Field(description="seconds Google billed (its totalBilledTime)")


class Status(BaseModel):
    """What /status answers: ovos-stt-http-server's fields, then this server's own."""

    status: str
    plugin: str
    lang_plugin: Optional[str]
    gradio: bool
    key_configured: bool
    version: str
    busy: int = Field(description="requests holding a slot now")
    capacity: int = Field(description="requests admitted at once; more get 503")
    buffered: int = Field(description="bytes of request bodies held now")
    totals: Totals


class ErrorBody(BaseModel):
    """Every JSON route's error: one line saying what went wrong."""

    error: str


@dataclass(frozen=True)
class Param:
    """A query parameter, declared once: its OpenAPI form and how it is read (``parse`` takes
    the raw text, None when absent, and raises Refusal(400) with one line for a bad value)."""

    name: str
    description: str
    schema: Dict[str, Any]
    parse: Callable[[Optional[str]], Any]
    required: bool = False
    repeated: bool = False       # ?a=x&a=y is joined with commas, as a list would be

    def openapi(self) -> Dict[str, Any]:
        return {"name": self.name, "in": "query", "required": self.required,
                "description": self.description, "schema": self.schema}

    def read(self, query: Any) -> Any:
        if self.repeated:
            given = query.getlist(self.name)
            return self.parse(",".join(given) if given else None)
        return self.parse(query.get(self.name))


def read_query(query: Any, params: Sequence[Param]) -> Dict[str, Any]:
    """Every declared parameter's value, by name. Raises Refusal(400)."""
    return {param.name: param.read(query) for param in params}


def _whole_param(name: str) -> Callable[[Optional[str]], Optional[int]]:
    return lambda raw: whole_number(raw, name)


LANG = {"type": "string", "maxLength": MAX_LANG_CHARS, "pattern": LANG_PATTERN}
LANG_PARAM = Param("lang", "language tag (en-US, pt-BR, auto); default: the server's", LANG, parse_lang)
AUDIO_QUERY = [
    LANG_PARAM,
    Param("sample_rate", "for raw PCM: samples per second (default 16000); ignored for a file",
          {"type": "integer", "minimum": 1000, "maximum": 768000}, _whole_param("sample_rate")),
    Param("sample_width", "for raw PCM: bytes per sample (default 2); ignored for a file",
          {"type": "integer", "minimum": 1, "maximum": 4}, _whole_param("sample_width")),
]
DETECT_QUERY = [
    Param("valid_langs", "candidate language tags, comma-separated (at most 32)",
          {"type": "string", "minLength": 2}, parse_candidates, required=True, repeated=True),
    *AUDIO_QUERY]
AUDIO_FILE_TYPES = ["audio/wav", "audio/flac", "audio/ogg", "audio/aiff", "audio/mpeg"]
AUDIO_BODY = {"requestBody": {"required": True, "description": (
    "A WAV file (FLAC, Ogg, AIFF and MP3 with the [flac] extra), or raw 16-bit little-endian mono PCM "
    "(see sample_rate and sample_width), as the body; or a multipart upload with the file in "
    "the field 'audio' (and optionally 'lang', which wins over the query's)."),
    "content": {
        **{media_type: {"schema": BINARY} for media_type in AUDIO_FILE_TYPES},
        "application/octet-stream": {"schema": BINARY},
        "multipart/form-data": {"schema": {
            "type": "object", "required": ["audio"],
            "properties": {"audio": BINARY, "lang": LANG}}},
    }}}
JSON_BODY = {"requestBody": {"required": True, "content": {"application/json": {"schema": {
    "type": "object", "required": ["audio_b64"],
    "properties": {
        "audio_b64": {"type": "string", "description": "the audio as for /stt, base64"},
        "lang": {**LANG, "description": "language tag; default: the server's"},
        "sample_rate": {"type": "integer", "minimum": 1000, "maximum": 768000},
        "sample_width": {"type": "integer", "minimum": 1, "maximum": 4},
    }}}}}}

_RETRY_AFTER = {"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}}
_ERRORS: List[Tuple[int, str, Dict[str, Any]]] = [
    (400, "bad or undecodable audio, or bad parameters", {}),
    (401, "a token is configured and the request lacks it ('Authorization: Bearer <token>')",
     {"WWW-Authenticate": {"schema": {"type": "string"}}}),
    (408, "the body stalled or took too long to arrive", {}),
    (413, "the body, or the audio in it, is larger than this server takes", {}),
    (415, "the body is not audio in a form this server reads", {}),
    (501, "language detection is not available", {}),
    (502, "Google refused: bad key, API not enabled, key restricted, audio rejected", {}),
    (503, "no key configured, server busy, Google unavailable or quota exhausted", _RETRY_AFTER),
    (504, "Google did not answer within the plugin's timeout", {}),
]


def error_responses(text: bool, skip: Tuple[int, ...] = ()) -> Dict[Any, Dict[str, Any]]:
    """The error answers of an STT route: one line of text (/stt) or ``{"error": ...}``."""
    answers: Dict[Any, Dict[str, Any]] = {}
    for status, why, headers in _ERRORS:
        if status in skip:
            continue
        answer: Dict[str, Any] = {"description": why}
        if text:
            answer["content"] = TEXT
        else:
            answer["model"] = ErrorBody
        if headers:
            answer["headers"] = headers
        answers[status] = answer
    return answers


STT: Dict[str, Any] = dict(
    summary="Transcribe audio",
    response_description='the transcript as text ("" when no speech was heard)',
    responses=error_responses(text=True, skip=(501,)),
    openapi_extra={"parameters": [p.openapi() for p in AUDIO_QUERY], **AUDIO_BODY})
STT_JSON: Dict[str, Any] = dict(
    summary="Transcribe base64 audio sent as JSON",
    responses={200: {"model": Transcript}, **error_responses(text=False, skip=(501,))},
    openapi_extra=JSON_BODY)
LANG_DETECT: Dict[str, Any] = dict(
    summary="Which of the candidate languages is spoken",
    responses={200: {"model": Detection}, **error_responses(text=False)},
    openapi_extra={"parameters": [p.openapi() for p in DETECT_QUERY], **AUDIO_BODY})
STATUS: Dict[str, Any] = dict(summary="Health and totals since start (no token needed)", response_model=Status)
METRICS: Dict[str, Any] = dict(
    summary="Prometheus metrics",
    response_description="the Prometheus text format",
    responses={200: {"content": {METRICS_MEDIA_TYPE: {"schema": {"type": "string"}}}},
               401: {"description": _ERRORS[1][1], "content": TEXT, "headers": _ERRORS[1][2]}})
