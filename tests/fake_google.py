"""A fake Google Speech-to-Text v1 REST server for tests: real HTTP, Google's checks and error bodies, scripted faults."""

from __future__ import annotations

import base64
import binascii
import contextlib
import io
import json
import math
import operator
import random
import re
import socket
import struct
import sys
import threading
import time
from array import array
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator
from urllib.parse import SplitResult, parse_qs, urlsplit

import discovery

try:  # optional: decodes FLAC/OGG to PCM so the default recognizer can tell silence from speech
    import soundfile
except (ImportError, OSError):  # OSError: the wheel without a bundled libsndfile on a bare system
    soundfile = None

RECOGNIZE_PATH = "/v1/speech:recognize"
MAX_PAYLOAD = 10485760
MAX_SECONDS = 60.0
SILENCE_RMS = 100.0  # int16 full scale is 32767; room noise sits well above this, digital silence at 0
JSON_TYPE = "application/json; charset=UTF-8"
REQUEST_IDS = random.Random()   # its own: a test's random state stays the test's
SERVICE = "speech.googleapis.com"
METHOD = "google.cloud.speech.v1.Speech.Recognize"
LANGUAGES = frozenset(
    line.strip().lower()
    for line in (Path(__file__).parent / "data" / "google-languages.txt").read_text().splitlines()
    if line.strip()
)
DEFAULT_UNSUPPORTED = frozenset({("latest_short", "iw-il"), ("latest_short", "ms-my")})
# proto order, so integer enum values (also legal proto3 JSON) map by index
ENCODINGS = ("ENCODING_UNSPECIFIED", "LINEAR16", "FLAC", "MULAW", "AMR", "AMR_WB", "OGG_OPUS",
             "SPEEX_WITH_HEADER_BYTE", "MP3", "WEBM_OPUS", "ALAW")
OPUS_RATES = frozenset({8000, 12000, 16000, 24000, 48000})
FIXED_RATES = {"AMR": {8000}, "AMR_WB": {16000}, "SPEEX_WITH_HEADER_BYTE": {16000},
               "OGG_OPUS": OPUS_RATES, "WEBM_OPUS": OPUS_RATES}
CONFIG_FIELDS = frozenset(discovery.schema("RecognitionConfig")["properties"])  # Google's own list
STATUS_NAMES = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
                405: "UNIMPLEMENTED", 429: "RESOURCE_EXHAUSTED", 499: "CANCELLED", 500: "INTERNAL",
                503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}
QUOTA_MESSAGE = ("Quota exceeded for quota metric 'speech.googleapis.com/default_requests' and limit "
                 "'DefaultRequestsPerMinutePerProject' of service 'speech.googleapis.com' for consumer "
                 "'project_number:764086051850'.")
DEFAULT_MESSAGES = {429: QUOTA_MESSAGE, 500: "Internal error encountered.", 503: "The service is currently unavailable.",
                    504: "Deadline expired before operation could complete."}
BAD_RATE = "Invalid recognition 'config': bad sample rate hertz."
BAD_LANGUAGE = "Invalid recognition 'config': bad language code."
NO_KEY = ("Method doesn't allow unregistered callers (callers without established identity). "
          "Please use API Key or other form of API consumer identity to call this API.")


def _info(reason: str, **metadata: str) -> dict:
    info = {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason, "domain": "googleapis.com"}
    return {**info, "metadata": metadata} if metadata else info


def _help(description: str, url: str) -> dict:
    return {"@type": "type.googleapis.com/google.rpc.Help", "links": [{"description": description, "url": url}]}


def _localized(message: str) -> dict:
    return {"@type": "type.googleapis.com/google.rpc.LocalizedMessage", "locale": "en-US", "message": message}


_PROJECT = "123456"
_ACTIVATE = f"https://console.developers.google.com/apis/api/speech.googleapis.com/overview?project={_PROJECT}"
_BILLING = f"https://console.developers.google.com/billing/enable?project={_PROJECT}"
_CONSUMER = {"service": SERVICE, "consumer": f"projects/{_PROJECT}"}
_BAD_KEY, _OLD_KEY = "API key not valid. Please pass a valid API key.", "API key expired. Please renew the API key."
# key_errors kind -> (HTTP code, message, details); texts from reference section 4
KEY_ERRORS: dict[str, tuple[int, str, list[dict]]] = {
    "invalid": (400, _BAD_KEY, [_info("API_KEY_INVALID", service=SERVICE), _localized(_BAD_KEY)]),
    "expired": (400, _OLD_KEY, [_info("API_KEY_INVALID", service=SERVICE), _localized(_OLD_KEY)]),
    "disabled": (403, f"Cloud Speech-to-Text API has not been used in project {_PROJECT} before or it is disabled. "
                      f"Enable it by visiting {_ACTIVATE} then retry. If you enabled this API recently, wait a few "
                      "minutes for the action to propagate to our systems and retry.",
                 [_help("Google developers console API activation", _ACTIVATE), _info("SERVICE_DISABLED", **_CONSUMER)]),
    "billing": (403, f"This API method requires billing to be enabled. Please enable billing on project #{_PROJECT} "
                     f"by visiting {_BILLING} then retry. If you enabled billing for this project recently, wait a few "
                     "minutes for the action to propagate to our systems and retry.",
                [_help("Google developers console billing", _BILLING), _info("BILLING_DISABLED", **_CONSUMER)]),
    "restricted": (403, f"Requests to this API {SERVICE} method {METHOD} are blocked.", [_info("API_KEY_SERVICE_BLOCKED")]),
    "key_type": (401, "API keys are not supported by this API. Expected OAuth2 access token or other authentication "
                      "credentials that assert a principal. See https://cloud.google.com/docs/authentication",
                 [_info("CREDENTIALS_MISSING", method=METHOD, service=SERVICE)]),
    "suspended": (403, f"Consumer 'project_number:{_PROJECT}' has been suspended.",
                  [_info("CONSUMER_SUSPENDED", **_CONSUMER)]),
}
DEFAULT_DETAILS = {429: [_info("RATE_LIMIT_EXCEEDED", consumer="projects/764086051850", service=SERVICE,
                               quota_metric="speech.googleapis.com/default_requests",
                               quota_limit="DefaultRequestsPerMinutePerProject")]}


def google_error(code: int, message: str | None = None, details: list[dict] | None = None) -> dict:
    """A `google.rpc.Status` body; message and details default to what Google sends for `code`."""
    error: dict[str, Any] = {"code": code, "message": message or DEFAULT_MESSAGES.get(code, "Unknown error."),
                             "status": STATUS_NAMES.get(code, "UNKNOWN")}
    details = DEFAULT_DETAILS.get(code) if details is None and message is None else details
    return {"error": {**error, "details": details}} if details else {"error": error}


class Headers(dict):
    """Received headers with the client's spelling kept as keys; `[]`, `get` and `in` ignore case."""

    def _key(self, name: object) -> object:
        lowered = name.lower() if isinstance(name, str) else name
        return next((key for key in self if key.lower() == lowered), name)

    def __getitem__(self, name: object) -> str:
        return super().__getitem__(self._key(name))

    def __contains__(self, name: object) -> bool:
        return super().__contains__(self._key(name))

    def get(self, name: object, default: Any = None) -> Any:
        return super().get(self._key(name), default)


@dataclass
class Recorded:
    """One request as received; `received_at` is `time.monotonic()` when its request line was parsed."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: Headers
    body: bytes
    json: dict | None
    chunked: bool
    received_at: float


@dataclass
class AudioInfo:
    """What the fake decoded; `pcm` is channel 0 as int16 little-endian, or None when it cannot be decoded."""

    sample_rate: int
    channels: int
    sample_width: int
    duration: float
    pcm: bytes | None
    encoding: str


@dataclass
class Fault:
    """A scripted misbehaviour, applied to one recognize request instead of the normal answer."""

    kind: str  # "status" | "drop" | "reset" | "hang" | "trickle" | "html" | "truncated" | "shape" | "delay"
    status: int = 500
    body: dict | str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    @classmethod
    def http(cls, status: int, *, retry_after: float | None = None, message: str | None = None) -> Fault:
        headers = {} if retry_after is None else {"Retry-After": f"{retry_after:g}"}
        return cls("status", status, google_error(status, message), headers)

    @classmethod
    def drop(cls) -> Fault:  # FIN with no response at all
        return cls("drop")

    @classmethod
    def reset(cls) -> Fault:  # headers and half the body, then RST
        return cls("reset")

    @classmethod
    def hang(cls, seconds: float) -> Fault:  # silence for `seconds`, then FIN
        return cls("hang", seconds=seconds)

    @classmethod
    def trickle(cls, seconds: float) -> Fault:  # the normal answer, one byte at a time over `seconds`
        return cls("trickle", seconds=seconds)

    @classmethod
    def html(cls) -> Fault:
        return cls("html", 200, "<html><body><h1>Error 502 (Server Error)!!1</h1></body></html>")

    @classmethod
    def truncated(cls) -> Fault:
        return cls("truncated", 200, '{"results": [{"alternatives": [{"transcript": "hel')

    @classmethod
    def shape(cls, body: dict | None = None) -> Fault:
        return cls("shape", 200, {"results": "oops"} if body is None else body)

    @classmethod
    def delay(cls, seconds: float) -> Fault:  # wait, then answer normally
        return cls("delay", seconds=seconds)

    @classmethod
    def answer(cls, status: int, body: dict | list | str, headers: dict[str, str] | None = None) -> Fault:
        """Any status, body (JSON, or text sent as it is) and headers: a misbehaving endpoint."""
        text = body if isinstance(body, str) else json.dumps(body)
        return cls("status", status, text, dict(headers or {}))

    @classmethod
    def redirect(cls, status: int, location: str) -> Fault:
        return cls("status", status, "Moved", {"Location": location})


class _Reject(Exception):
    def __init__(self, code: int, message: str, details: list[dict] | None = None) -> None:
        super().__init__(message)
        self.code, self.payload = code, google_error(code, message, details or [])


class _Dropped(Exception):
    """The connection must close without an answer."""


def _camel(name: str) -> str:  # proto3 JSON parsers accept the proto names too (language_code)
    return re.sub(r"_([a-z0-9])", lambda m: m.group(1).upper(), name)


def _first_channel(data: bytes, channels: int) -> bytes:
    samples = array("h")
    samples.frombytes(data[: len(data) - len(data) % (2 * channels)])
    return samples[::channels].tobytes()


def _rms(pcm: bytes) -> float:
    samples = array("h")
    samples.frombytes(pcm[: len(pcm) // 2 * 2])
    return math.sqrt(sum(map(operator.mul, samples, samples)) / len(samples)) if samples else 0.0


def _decode(data: bytes) -> tuple[bytes, int] | None:
    """Channel 0 as int16 bytes and the frame count, via soundfile if it is installed and can read `data`."""
    if soundfile is None:
        return None
    try:
        frames, _ = soundfile.read(io.BytesIO(data), dtype="int16", always_2d=True)
    except RuntimeError:  # LibsndfileError: not a stream libsndfile knows; leave silence undecided
        return None
    return frames[:, 0].tobytes(), len(frames)


def _check_channels(kind: str, header: int, asked: int) -> None:
    if asked and asked != header:
        raise _Reject(400, f"audio_channel_count `{asked}` in RecognitionConfig must either be unspecified or "
                           f"match the value in the {kind} header `{header}`.")
    if header > 1 and not asked:
        raise _Reject(400, f"Must use single channel (mono) audio, but {kind} header indicates {header} channels.")


def _wav(data: bytes, encoding: str, rate: int, channels: int) -> AudioInfo:
    fmt, frames, pos = None, None, 12
    while pos + 8 <= len(data) and frames is None:
        cid, size = struct.unpack_from("<4sI", data, pos)
        chunk = data[pos + 8 : pos + 8 + size]  # slicing clamps the 0xFFFFFFFF size of streamed WAVs
        if cid == b"fmt " and len(chunk) >= 16:
            fmt = struct.unpack_from("<HHIIHH", chunk)
            if fmt[0] == 0xFFFE and len(chunk) >= 26:  # WAVE_FORMAT_EXTENSIBLE: the real tag opens the GUID
                fmt = (struct.unpack_from("<H", chunk, 24)[0], *fmt[1:])
        elif cid == b"data":
            frames = chunk
        pos += 8 + size + (size & 1)
    header_encoding = {1: "LINEAR16", 6: "ALAW", 7: "MULAW"}.get(fmt[0]) if fmt else None
    if frames is None or header_encoding is None or (header_encoding == "LINEAR16" and fmt[5] != 16):
        raise _Reject(400, "WAV header indicates an unsupported format.")
    _, header_channels, header_rate, _, _, bits = fmt
    if encoding not in ("ENCODING_UNSPECIFIED", header_encoding):
        raise _Reject(400, f"Specify {header_encoding} encoding to match file header.")
    if rate and rate != header_rate:
        raise _Reject(400, f"sample_rate_hertz ({rate}) in RecognitionConfig must either be omitted or match "
                           f"the value in the WAV header ( {header_rate}).")
    if not 8000 <= header_rate <= 48000:
        raise _Reject(400, BAD_RATE)
    _check_channels("WAV", header_channels, channels)
    width = bits // 8
    pcm = _first_channel(frames, header_channels) if width == 2 else None
    return AudioInfo(header_rate, header_channels, width, len(frames) / (width * header_channels * header_rate),
                     pcm, header_encoding)


def _flac(data: bytes, encoding: str, rate: int, channels: int) -> AudioInfo:
    if encoding not in ("ENCODING_UNSPECIFIED", "FLAC"):
        raise _Reject(400, "Specify FLAC encoding to match file header.")
    if len(data) < 42 or data[4] & 0x7F != 0:  # STREAMINFO must be the first metadata block
        raise _Reject(400, "FLAC header indicates an unsupported format.")
    packed = int.from_bytes(data[18:26], "big")  # rate:20 channels-1:3 bits-1:5 total_samples:36
    header_rate, header_channels = packed >> 44, ((packed >> 41) & 7) + 1
    bits, total = ((packed >> 36) & 0x1F) + 1, packed & ((1 << 36) - 1)
    if bits not in (16, 24):
        raise _Reject(400, "FLAC header indicates an unsupported format.")
    if rate and rate != header_rate:
        raise _Reject(400, f"sample_rate_hertz ({rate}) in RecognitionConfig must either be unspecified or match "
                           f"the value in the FLAC header ({header_rate}).")
    if not 8000 <= header_rate <= 48000:
        raise _Reject(400, BAD_RATE)
    _check_channels("FLAC", header_channels, channels)
    decoded = _decode(data)
    if not total and decoded:  # 0 means "unknown" in STREAMINFO; Google's limit uses the header when it can
        total = decoded[1]
    return AudioInfo(header_rate, header_channels, bits // 8, total / header_rate,
                     decoded[0] if decoded else None, "FLAC")


def _ogg_opus(data: bytes, rate: int) -> AudioInfo:
    if data[:4] != b"OggS":  # Google answers undecodable audio with an empty 200, so report silence
        return AudioInfo(rate, 1, 2, 0.0, b"", "OGG_OPUS")
    head, last = data.find(b"OpusHead"), data.rfind(b"OggS")
    channels, preskip = (data[head + 9], struct.unpack_from("<H", data, head + 10)[0]) if head >= 0 else (1, 0)
    granule = struct.unpack_from("<q", data, last + 6)[0] if len(data) >= last + 14 else 0
    decoded = _decode(data)  # Opus granule positions always count 48 kHz samples
    return AudioInfo(rate, channels, 2, max(0, granule - preskip) / 48000, decoded[0] if decoded else None, "OGG_OPUS")


def analyse_audio(config: dict, data: bytes) -> AudioInfo:
    """Apply Google's per-encoding rules to decoded `audio.content`; raises _Reject with Google's message."""
    encoding = config.get("encoding", "ENCODING_UNSPECIFIED")
    if isinstance(encoding, int) and 0 <= encoding < len(ENCODINGS):
        encoding = ENCODINGS[encoding]
    if encoding not in ENCODINGS:
        raise _Reject(400, "Invalid value at 'config.encoding' (type.googleapis.com/google.cloud.speech.v1."
                           f"RecognitionConfig.AudioEncoding), {json.dumps(encoding)}")
    rate, channels = int(config.get("sampleRateHertz") or 0), int(config.get("audioChannelCount") or 0)
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        return _wav(data, encoding, rate, channels)
    if data[:4] == b"fLaC":
        return _flac(data, encoding, rate, channels)
    if encoding == "ENCODING_UNSPECIFIED":
        raise _Reject(400, "Invalid recognition 'config': bad encoding..")
    if not 8000 <= rate <= 48000 or rate not in FIXED_RATES.get(encoding, {rate}):
        raise _Reject(400, BAD_RATE)
    if encoding == "OGG_OPUS":
        return _ogg_opus(data, rate)
    if encoding == "FLAC":  # no fLaC header: Google answers undecodable audio with an empty 200
        return AudioInfo(rate, channels or 1, 2, 0.0, b"", encoding)
    channels = channels or 1
    width = {"LINEAR16": 2, "MULAW": 1, "ALAW": 1}.get(encoding, 0)
    if not width:  # compressed formats the fake does not parse: length and silence unknown
        return AudioInfo(rate, channels, 0, 0.0, None, encoding)
    pcm = _first_channel(data, channels) if width == 2 else None
    return AudioInfo(rate, channels, width, len(data) / (width * channels * rate), pcm, encoding)


# One check after another in the order Google reports them: split up, the order would be harder to
# see than the branches are to count.
def check_request(body: bytes, unsupported_models: set[tuple[str, str]]) -> tuple[dict, AudioInfo]:  # noqa: C901
    """Validate a recognize body in Google's order; returns the camelCase request and its audio, or raises _Reject."""
    try:
        raw = json.loads(body)
    except (ValueError, RecursionError):
        raise _Reject(400, "Invalid JSON payload received. Unexpected token.") from None
    refused = discovery.problems(raw, "RecognizeRequest")  # Google's schema first, as its JSON parser does
    if refused:
        raise _Reject(400, refused[0])
    sections = {part: {_camel(name): item for name, item in (raw.get(part) or {}).items() if item is not None}
                for part in ("config", "audio")}
    for name in ("maxAlternatives", "sampleRateHertz", "audioChannelCount"):  # int32 may arrive as "16000"
        if name in sections["config"]:
            sections["config"][name] = int(float(sections["config"][name]))
    config, audio = sections["config"], sections["audio"]
    if "content" in audio and "uri" in audio:
        raise _Reject(400, "Invalid JSON payload received. Oneof field 'audio_source' is already set. Cannot set 'uri'.")
    if not audio:
        raise _Reject(400, "RecognitionAudio not set.")
    if not config:
        raise _Reject(400, "RecognitionConfig not set.")
    language = config.get("languageCode")
    if not isinstance(language, str) or language.lower() not in LANGUAGES:
        raise _Reject(400, BAD_LANGUAGE)
    if not isinstance(config.get("maxAlternatives", 0), int) or not 0 <= config.get("maxAlternatives", 0) <= 30:
        raise _Reject(400, "Invalid recognition 'config': maxAlternatives must be between 0 and 30.")
    alternatives = config.get("alternativeLanguageCodes", [])
    if len(alternatives) > 3:
        raise _Reject(400, "Invalid recognition 'config': at most 3 alternative language codes are allowed.")
    if any(not isinstance(code, str) or code.lower() not in LANGUAGES for code in alternatives):
        raise _Reject(400, BAD_LANGUAGE)
    if (config.get("model"), language.lower()) in unsupported_models:
        raise _Reject(400, "Invalid recognition 'config': The requested model is currently not supported for "
                           f"language : {language}.")
    if "uri" in audio:  # an API key is an anonymous caller to Cloud Storage
        raise _Reject(403, "Anonymous caller does not have storage.objects.get access to the Google Cloud Storage object.")
    content = audio["content"]
    try:  # proto3 JSON bytes: standard or URL-safe alphabet, padding optional
        text = content.replace("-", "+").replace("_", "/")
        data = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (AttributeError, binascii.Error):
        shown = json.dumps(content)[:60]
        raise _Reject(400, f"Invalid value at 'audio.content' (TYPE_BYTES), Base64 decoding failed for {shown}") from None
    info = analyse_audio(config, data)
    if info.duration > MAX_SECONDS:
        raise _Reject(400, "Sync input too long. For audio longer than 1 min use LongRunningRecognize with a 'uri' parameter.")
    return {"config": config, "audio": audio}, info


def default_recognizer(req: dict, audio: AudioInfo) -> dict:
    """`{}` for silence (Google's no-speech answer); else one result saying what arrived, for tests to assert on."""
    if audio.pcm is not None and _rms(audio.pcm) < SILENCE_RMS:
        return {}
    config = req["config"]
    text = f"audio {audio.duration:.2f} seconds at {audio.sample_rate} hertz"
    alternatives: list[dict] = [{"transcript": text, "confidence": 0.9}]
    # Google sets confidence only on the top alternative
    alternatives += [{"transcript": f"{text} (alternative {n})"} for n in range(1, config.get("maxAlternatives") or 1)]
    result = {"alternatives": alternatives, "resultEndTime": f"{audio.duration:.3f}s",
              "languageCode": config["languageCode"].lower()}
    return {"results": [result], "totalBilledTime": f"{max(1, math.ceil(audio.duration))}s",
            "requestId": str(REQUEST_IDS.randrange(10**18, 2**63))}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so a client's connection pooling shows in `connections`
    disable_nagle_algorithm = True  # Nagle plus delayed ACK would add ~40 ms stalls to keep-alive timings
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # keep pytest output clean
        pass

    def do_POST(self) -> None:
        fake, started = self.server.fake, time.monotonic()
        url = urlsplit(self.path)
        chunked = "chunked" in self.headers.get("Transfer-Encoding", "").lower()
        self._body, too_large, dropped = bytearray(), False, False
        refused = fake.refuse_chunked if chunked else None
        try:
            if not refused:
                too_large = self._read_body(chunked)
                self.close_connection = self.close_connection or too_large  # the unread rest can't be skipped
        except _Dropped:
            dropped = True
        except OSError:  # the client, or stop(), closed the socket mid-upload
            return self._close()
        fake._record(self, url, bytes(self._body), chunked, started)
        try:
            if dropped:
                return self._close()
            if refused:  # Google's front end answers HTML, not a google.rpc.Status
                self.close_connection = True
                self._send(refused, f"<html><p><b>{refused}.</b> That's an error.</p></html>", "text/html; charset=UTF-8")
            else:
                self._route(url, too_large)
            if refused or too_large:
                self._drain()
        except (_Dropped, OSError):  # stop() arrived while we waited, or the socket closed mid-answer
            self._close()

    do_GET = do_PUT = do_PATCH = do_DELETE = do_POST

    def do_HEAD(self) -> None:  # what a client warming its connection sends: a bodiless 404, kept alive
        self.server.fake._record(self, urlsplit(self.path), b"", False, time.monotonic())
        status, headers = self.server.fake.head_answer
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _route(self, url: SplitResult, too_large: bool) -> None:
        fake = self.server.fake
        if url.path != fake.prefix + RECOGNIZE_PATH:
            return self._send(404, google_error(404, "Method not found."))
        if self.command != "POST":
            return self._send(405, google_error(405, f"Method {self.command} is not allowed for {RECOGNIZE_PATH}."))
        query = parse_qs(url.query, keep_blank_values=True)
        key = self.headers.get("X-Goog-Api-Key") or query.get("key", [""])[0]
        fault = fake._next_fault()
        if fault is None or fault.kind == "delay":
            if fault and fake._stopping.wait(fault.seconds):
                raise _Dropped
            return self._send(*fake._answer(key, bytes(self._body), too_large))
        if fault.kind == "status":
            kind = JSON_TYPE if isinstance(fault.body, dict) or str(fault.body)[:1] in "{[" else "text/plain; charset=UTF-8"
            body = google_error(fault.status) if fault.body is None else fault.body
            return self._send(fault.status, body, kind, fault.headers)
        if fault.kind in ("html", "truncated", "shape"):
            kind = "text/html; charset=UTF-8" if fault.kind == "html" else JSON_TYPE
            return self._send(fault.status, fault.body, kind, fault.headers)
        if fault.kind == "hang":
            fake._stopping.wait(fault.seconds)
            return self._close()
        if fault.kind == "drop":
            return self._close()
        if fault.kind == "reset":
            raw = self._response(200, {"results": [{"alternatives": [{"transcript": "never arrives whole"}]}]})
            start = raw.index(b"\r\n\r\n") + 4
            self.wfile.write(raw[: start + (len(raw) - start) // 2])
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.rfile.close()  # the makefile reference would otherwise defer the close past socketserver's FIN
            self.connection.close()
            return self._close()
        if fault.kind == "trickle":
            raw = self._response(*fake._answer(key, bytes(self._body), too_large))
            for n in range(len(raw)):
                self.wfile.write(raw[n : n + 1])
                if fake._stopping.wait(fault.seconds / len(raw)):
                    return self._close()
            return None
        raise ValueError(f"unknown fault kind {fault.kind!r}")

    def _read_body(self, chunked: bool) -> bool:
        """Read the request body into self._body; True when it is over Google's limit (and left unread)."""
        if not chunked:
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_PAYLOAD:  # judged from the header, like Google, before reading a byte
                return True
            self._take(length)
            return False
        while True:
            line = self.rfile.readline(65537)
            try:
                size = int(line.split(b";")[0], 16)  # chunk extensions after ';' are ignored
            except ValueError:
                raise _Dropped from None
            if size == 0:
                break
            if len(self._body) + size > MAX_PAYLOAD:
                return True
            self._take(size)
            self.rfile.readline(3)  # the CRLF closing the chunk
        while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
            pass  # trailers
        return False

    def _take(self, count: int) -> None:
        fake = self.server.fake
        end = len(self._body) + count
        while len(self._body) < end:
            want = end - len(self._body)
            if fake.read_rate_bps:  # ~20 ms slices keep the pace smooth
                want = min(want, max(1, int(fake.read_rate_bps / 50)))
            if fake.drop_after_bytes is not None:
                if len(self._body) >= fake.drop_after_bytes:
                    raise _Dropped
                want = min(want, fake.drop_after_bytes - len(self._body))
            if fake.stall_after_bytes is not None:  # a dead uplink: the connection stays open, nothing moves
                if len(self._body) >= fake.stall_after_bytes:
                    fake._stopping.wait()
                    raise _Dropped
                want = min(want, fake.stall_after_bytes - len(self._body))
            data = self.rfile.read(want)
            if not data:
                raise _Dropped
            self._body += data
            if fake.read_rate_bps and fake._stopping.wait(len(data) / fake.read_rate_bps):
                raise _Dropped

    def _response(self, status: int, body: dict | str, content_type: str = JSON_TYPE,
                  headers: dict[str, str] | None = None) -> bytes:
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        phrase = self.responses.get(status, ("",))[0]
        lines = [f"HTTP/1.1 {status} {phrase}", f"Content-Length: {len(data)}"]
        lines += [f"{name}: {value}" for name, value in {"Content-Type": content_type, **(headers or {})}.items()]
        lines += ["Connection: close"] if self.close_connection else []
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + data

    def _send(self, status: int, body: dict | str, content_type: str = JSON_TYPE,
              headers: dict[str, str] | None = None) -> None:
        self.wfile.write(self._response(status, body, content_type, headers))

    def _drain(self) -> None:
        """Read what the client still sends before closing: closing on unread data makes the kernel send RST,
        and the client would see a reset instead of our answer."""
        self.connection.settimeout(2.0)
        with contextlib.suppress(OSError):
            while self.rfile.read1(1 << 16) and not self.server.fake._stopping.is_set():
                pass

    def _close(self) -> None:
        self.close_connection = True


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # Google takes any number of connections at once; socketserver's default backlog of 5 drops
    # the SYNs of a crowd (256 clients through the server), a delay Google does not add.
    request_queue_size = 1024
    block_on_close = False  # stop() must not join hung handlers; they watch the stop event instead

    def __init__(self, fake: FakeGoogle) -> None:
        self.fake, self.open_sockets = fake, set[socket.socket]()
        super().__init__(("127.0.0.1", 0), _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.fake._lock:
            self.fake.connections += 1
            self.open_sockets.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.fake._lock:
            self.open_sockets.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], OSError):  # resets and closed sockets are the point of the fake
            super().handle_error(request, client_address)


class FakeGoogle:
    """Google Speech-to-Text v1 `speech:recognize` on 127.0.0.1; attributes may be changed while it runs.

    `recognizer(req, audio)` gets the validated request (config/audio keys in camelCase) and an AudioInfo,
    and returns the 200 body. `Recorded.headers` keeps the client's spelling and looks names up ignoring case.
    """

    requests: list[Recorded]
    connections: int
    delay: float
    recognizer: Callable[[dict, AudioInfo], dict]
    key_errors: dict[str, str]
    unsupported_models: set[tuple[str, str]]

    def __init__(self, *, prefix: str = "", valid_keys: Iterable[str] = ("test-key",),
                 delay: float = 0.0, refuse_chunked: int | None = None, read_rate_bps: float | None = None,
                 drop_after_bytes: int | None = None, stall_after_bytes: int | None = None) -> None:
        self.prefix = prefix.rstrip("/")
        self._defaults = dict(valid_keys=frozenset(valid_keys), delay=delay, refuse_chunked=refuse_chunked,
                              read_rate_bps=read_rate_bps, drop_after_bytes=drop_after_bytes,
                              stall_after_bytes=stall_after_bytes)
        self._lock, self._stopping = threading.Lock(), threading.Event()
        self._faults: deque[Fault] = deque()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.requests = []
        self.reset()

    def reset(self) -> None:
        """Forget requests, scripted faults and the connection count; restore the constructor's settings."""
        with self._lock:
            self.requests.clear()
            self._faults.clear()
            self.connections = 0
        self.valid_keys: set[str] = set(self._defaults["valid_keys"])
        self.delay = self._defaults["delay"]
        self.refuse_chunked: int | None = self._defaults["refuse_chunked"]
        self.read_rate_bps: float | None = self._defaults["read_rate_bps"]
        self.drop_after_bytes: int | None = self._defaults["drop_after_bytes"]
        self.stall_after_bytes: int | None = self._defaults["stall_after_bytes"]
        self.recognizer = default_recognizer
        self.head_answer: tuple[int, dict[str, str]] = (404, {})
        self.key_errors = {}
        self.unsupported_models = set(DEFAULT_UNSUPPORTED)

    def script(self, *faults: Fault) -> None:
        """Queue faults; each recognize request takes the oldest one instead of the normal answer."""
        with self._lock:
            self._faults.extend(faults)

    @property
    def endpoint(self) -> str:
        if self._server is None:
            raise RuntimeError("FakeGoogle is not running; call start() or use it as a context manager")
        return f"http://127.0.0.1:{self._server.server_address[1]}{self.prefix}"

    @property
    def url(self) -> str:
        return self.endpoint + RECOGNIZE_PATH

    def start(self) -> FakeGoogle:
        self._stopping.clear()
        self._server = _Server(self)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fake-google", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop within about a second: hung, delayed and trickling handlers wake on the stop event."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        with self._lock:
            open_sockets = list(server.open_sockets)
        for sock in open_sockets:  # wakes handlers blocked reading idle keep-alive connections
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=1.0)

    def __enter__(self) -> FakeGoogle:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _record(self, handler: _Handler, url: SplitResult, body: bytes, chunked: bool, started: float) -> None:
        headers = Headers()
        for name, value in handler.headers.items():
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = None
        with self._lock:
            self.requests.append(Recorded(handler.command, url.path, parse_qs(url.query, keep_blank_values=True),
                                          headers, body, parsed if isinstance(parsed, dict) else None, chunked, started))

    def _next_fault(self) -> Fault | None:
        with self._lock:
            return self._faults.popleft() if self._faults else None

    def _answer(self, key: str, body: bytes, too_large: bool) -> tuple[int, dict]:
        """Normal handling in Google's order: key, payload size, request checks, then `delay` and the recognizer."""
        try:
            if not key:
                raise _Reject(403, NO_KEY)
            if key in self.key_errors or key not in self.valid_keys:
                raise _Reject(*KEY_ERRORS[self.key_errors.get(key, "invalid")])
            if too_large:
                raise _Reject(400, f"Request payload size exceeds the limit: {MAX_PAYLOAD} bytes.")
            req, audio = check_request(body, self.unsupported_models)
        except _Reject as reject:
            return reject.code, reject.payload
        if self._stopping.wait(self.delay):  # no answers from a server that is shutting down
            raise _Dropped
        try:
            return 200, self.recognizer(req, audio)
        except Exception as exc:  # a broken test recognizer should fail that test loudly, not hang its client
            return 500, google_error(500, f"fake recognizer raised {exc!r}")


@contextlib.contextmanager
def fake_google_server(**options: Any) -> Iterator[FakeGoogle]:
    """`with fake_google_server(delay=0.1) as fake:`, a running FakeGoogle stopped on exit."""
    with FakeGoogle(**options) as fake:
        yield fake
