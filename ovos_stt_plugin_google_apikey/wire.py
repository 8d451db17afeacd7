"""Google Speech-to-Text v1 JSON: build the recognize body, parse results and errors. No I/O."""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple, Type

from . import errors

try:    # the [server] extra's pybase64 (SIMD): a 4.5 s clip in ~5 µs, the stdlib's in ~300 µs
    from pybase64 import b64encode
except ImportError:     # pragma: no cover - exercised by tests/test_wire.py with it hidden
    from base64 import b64encode  # type: ignore[assignment]

RECOGNIZE_PATH = "/v1/speech:recognize"  # appended to the 'endpoint' setting
MAX_REQUEST_BYTES = 10 * 1024 * 1024     # Google: "Request payload size exceeds the limit: 10485760 bytes."
MAX_SYNC_SECONDS = 60.0                  # Google: "Sync input too long" past one minute
LINEAR16 = "LINEAR16"
ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"
RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"
TOTAL_BILLED_TIME = "totalBilledTime"    # a Duration, "2s": what the request costs
# Languages of Google's list written without spaces between words (Chinese, Cantonese,
# Japanese, Thai, Lao, Khmer, Burmese), by language subtag in Google's and standard form:
# their results and parts are joined with no separator.
NO_SPACE_LANGS = frozenset({"cmn", "yue", "zh", "ja", "th", "lo", "km", "my"})
# What an answer's languageCode may look like; anything else is ignored.
LANGUAGE_CODE = re.compile(r"[A-Za-z]{2,3}(?:-[A-Za-z0-9]{1,8}){0,4}")
MAX_FIELD_CHARS = 500       # of Google's message or reason, kept in our errors
MAX_RETRY_HINT = 3600.0     # seconds; a longer hint is taken as this (the client clamps further)

_REASON_ERRORS: Dict[str, Type[errors.APIError]] = {
    "API_KEY_INVALID": errors.InvalidKeyError,
    "SERVICE_DISABLED": errors.APINotEnabledError,
    "BILLING_DISABLED": errors.APINotEnabledError,
    "CONSUMER_SUSPENDED": errors.APINotEnabledError,
    "API_KEY_SERVICE_BLOCKED": errors.KeyRestrictedError,
    "API_KEY_HTTP_REFERRER_BLOCKED": errors.KeyRestrictedError,
    "API_KEY_IP_ADDRESS_BLOCKED": errors.KeyRestrictedError,
    "API_KEY_ANDROID_APP_BLOCKED": errors.KeyRestrictedError,
    "API_KEY_IOS_APP_BLOCKED": errors.KeyRestrictedError,
    "CREDENTIALS_MISSING": errors.KeyTypeError,
    "RATE_LIMIT_EXCEEDED": errors.QuotaError,
    "RESOURCE_EXHAUSTED": errors.QuotaError,
}
_ADVICE: Dict[Type[errors.APIError], str] = {
    errors.InvalidKeyError: "check 'key' in the plugin's mycroft.conf section (or GOOGLE_STT_API_KEY); "
                            f"create or copy a key at {errors.CONSOLE_CREDENTIALS}",
    errors.APINotEnabledError: "enable the Cloud Speech-to-Text API (and billing) for the key's project "
                               f"at {errors.CONSOLE_SPEECH_API}, then wait a few minutes",
    errors.KeyRestrictedError: "edit the key at {0} and allow 'Cloud Speech-to-Text API' under API "
                               "restrictions (and this device under application restrictions)"
                               .format(errors.CONSOLE_CREDENTIALS),
    errors.KeyTypeError: "Speech-to-Text does not accept this kind of key; create a standard API key "
                         f"(starting AIza) in a Cloud project with the API enabled at {errors.CONSOLE_CREDENTIALS}",
    errors.CredentialsError: "check the key and its project's settings at "
                             f"{errors.CONSOLE_CREDENTIALS}",
    errors.QuotaError: f"wait and retry, or raise the quota at {errors.CONSOLE_QUOTAS}",
    errors.ModelNotSupportedError: "set 'model' to one that supports the language, or null",
    errors.RequestRejectedError: "check the audio format, language and settings",
    errors.EndpointError: "check 'endpoint': it is the base URL, such as https://speech.googleapis.com; "
                          f"the plugin appends {RECOGNIZE_PATH}",
    errors.UnavailableError: "Google is unavailable; try again shortly",
    errors.DeadlineError: "Google did not answer in time; try again, or raise 'timeout'",
}


@dataclass(frozen=True)
class Alternative:
    """One hypothesis for the whole utterance; confidence None means Google did not say."""

    text: str
    confidence: Optional[float] = None


@dataclass(frozen=True)
class Transcript:
    """Google's answer: alternatives in Google's order (empty when no speech was heard)."""

    alternatives: Tuple[Alternative, ...] = ()
    language: Optional[str] = None
    # Google's totalBilledTime, summed over every request this transcript took; None when
    # Google did not say (an answer without the field).
    billed_seconds: Optional[float] = None

    @property
    def text(self) -> str:
        return self.alternatives[0].text if self.alternatives else ""


def build_recognize_body(content: bytes, language: str, *, encoding: str = LINEAR16,
                         sample_rate: int = 16000, model: Optional[str] = None,
                         alternative_languages: Sequence[str] = (), max_alternatives: int = 1,
                         punctuation: bool = False, profanity_filter: bool = False,
                         use_enhanced: bool = False, phrases: Sequence[str] = (),
                         boost: Optional[float] = None) -> Dict[str, Any]:
    """The JSON body of speech:recognize for mono audio already in ``encoding``. The keyword
    defaults are Google's own (what it does when a field is absent), not the plugin's. The
    audio's base64 is kept as ASCII bytes, as ``body_chunks`` sends it (decode it for json)."""
    config: Dict[str, Any] = {
        "encoding": encoding,
        "sampleRateHertz": sample_rate,
        "languageCode": language,
        "maxAlternatives": max_alternatives,
        "enableAutomaticPunctuation": punctuation,
        "profanityFilter": profanity_filter,
    }
    if alternative_languages:
        config["alternativeLanguageCodes"] = list(alternative_languages)
    if model:
        config["model"] = model
    if use_enhanced:
        config["useEnhanced"] = True
    if phrases:
        context: Dict[str, Any] = {"phrases": list(phrases)}
        if boost is not None:
            context["boost"] = boost
        config["speechContexts"] = [context]
    return {"config": config, "audio": {"content": b64encode(content)}}


def body_parts(body: Dict[str, Any]) -> Tuple[bytes, bytes]:
    """The JSON of a recognize body before and after its base64 audio content."""
    shell = {**body, "audio": {"content": ""}}
    head, _, tail = json.dumps(shell, separators=(",", ":")).rpartition('"content":""')
    return (head + '"content":"').encode("utf-8"), ('"' + tail).encode("utf-8")


def body_chunks(body: Dict[str, Any]) -> Tuple[bytes, bytes, bytes]:
    """The JSON bytes of a recognize body in three pieces, to be sent one after the other: the
    base64 audio (ASCII bytes, or a str: nothing to escape) goes out as it is, neither scanned
    by json.dumps (~4x slower on a 5 s clip's 213 KB) nor copied into one buffer."""
    head, tail = body_parts(body)
    content = body["audio"]["content"]
    return head, content.encode("ascii") if isinstance(content, str) else content, tail


def dump_body(body: Dict[str, Any]) -> bytes:
    """The JSON bytes of a recognize body, in one piece."""
    return b"".join(body_chunks(body))


def parse_response(payload: Any) -> Transcript:
    """Turn a 200 body into a Transcript; several results (pauses) are joined in order.

    Raises UnavailableError when the body is not shaped like a RecognizeResponse. A
    confidence that is not a number in [0, 1] counts as not given; a languageCode that is
    not a language tag is ignored.
    """
    if not isinstance(payload, dict):
        raise _shape("the answer is not a JSON object")
    if "error" in payload:          # a proxy's failure dressed as success is not "no speech"
        raise _shape("it holds an 'error'")
    results = _list(payload.get("results"), "results")
    per_result: List[List[Alternative]] = []
    language = None
    for result in results:
        if not isinstance(result, dict):
            raise _shape("a result is not an object")
        alternatives = [_alternative(alt) for alt in _list(result.get("alternatives"), "alternatives")]
        alternatives = [alt for alt in alternatives if alt.text.strip()]
        if alternatives:
            per_result.append(alternatives)
            language = language or _language(result.get("languageCode"))
    billed = billed_seconds(payload)
    if not per_result:
        return Transcript((), language, billed)
    joined: List[Alternative] = []
    for index in range(max(len(alts) for alts in per_result)):
        parts = [alts[min(index, len(alts) - 1)] for alts in per_result]
        text = join_texts([p.text for p in parts], language)
        known = [p.confidence for p in parts if p.confidence is not None]
        confidence = sum(known) / len(known) if len(known) == len(parts) else None
        if all(text != alt.text for alt in joined):
            joined.append(Alternative(text, confidence))
    return Transcript(tuple(joined), language, billed)


def billed_seconds(payload: Any) -> Optional[float]:
    """The ``totalBilledTime`` of a RecognizeResponse ("2s") in seconds; None when absent."""
    seconds = parse_duration(payload.get(TOTAL_BILLED_TIME)) if isinstance(payload, dict) else None
    return seconds if seconds is not None and math.isfinite(seconds) else None


def _shape(what: str) -> errors.UnavailableError:
    return errors.UnavailableError(f"Google's answer has an unexpected shape: {what}", status=200)


def _list(value: Any, name: str) -> List[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise _shape(f"'{name}' is not a list")
    return value


def _alternative(alt: Any) -> Alternative:
    if not isinstance(alt, dict):
        raise _shape("an alternative is not an object")
    text = alt.get("transcript", "")
    if not isinstance(text, str):
        raise _shape("a transcript is not a string")
    return Alternative(_unicode(text), _confidence(alt.get("confidence")))


def _confidence(value: Any) -> Optional[float]:
    """A number in (0, 1], else None. Proto3 JSON may write a float as a string ("0.9").
    0.0 is Google's "not set" sentinel (proto3 default), not zero confidence."""
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if not 0 < value <= 1:        # False for NaN; exact for whole numbers of any size
        return None
    return float(value)


def _unicode(text: str) -> str:
    """``text`` with any lone surrogate ("\\ud800" is valid JSON, not valid UTF-8) as U+FFFD,
    so that it can be printed, logged and sent on."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def _language(value: Any) -> Optional[str]:
    if isinstance(value, str) and len(value) <= 35 and LANGUAGE_CODE.fullmatch(value):
        return value
    return None


def join_texts(parts: Sequence[str], language: Optional[str]) -> str:
    """Consecutive transcripts (results of one answer, or parts of long audio) as one text:
    with no separator in a language written without spaces (NO_SPACE_LANGS), else one space."""
    if not parts:
        return ""
    glue = "" if (language or "").lower().split("-")[0] in NO_SPACE_LANGS else " "
    text = parts[0].strip()
    for part in parts[1:]:
        text += (part.rstrip() if part[:1].isspace() else glue + part.strip())
    return re.sub(r"\s{2,}", " ", text).strip()


def total_billed(transcripts: Sequence[Transcript]) -> Optional[float]:
    """What Google billed for all of them; None when Google said for none."""
    known = [t.billed_seconds for t in transcripts if t.billed_seconds is not None]
    return float(sum(known)) if known else None


def parse_error(status: int, payload: Any, secrets: Sequence[str] = ()) -> errors.APIError:
    """Map an HTTP error answer (a google.rpc.Status body, or anything else) to an APIError.

    Every field taken from the answer is scrubbed of ``secrets`` (an endpoint may echo the
    key anywhere), made one line and cut to MAX_FIELD_CHARS; fields of the wrong type are
    ignored.
    """
    error = payload.get("error") if isinstance(payload, dict) else None
    if not isinstance(error, dict):
        error = {}
    message = _field(error.get("message"), secrets)
    google_status = _field(error.get("status"), secrets)
    reason, retry_delay = "", None
    details = error.get("details")
    for detail in details if isinstance(details, list) else []:
        if not isinstance(detail, dict):
            continue
        if detail.get("@type") == ERROR_INFO:
            reason = reason or _field(detail.get("reason"), secrets)
        elif detail.get("@type") == RETRY_INFO:
            retry_delay = parse_duration(detail.get("retryDelay"))
    cls = _classify(status, reason, message)
    what = reason or google_status or f"HTTP {status}"
    told = f": {message.rstrip('.')}" if message else " (not a Google error body)"
    text = f"Google Speech-to-Text refused the request ({status} {what}){told}. To fix: {_ADVICE[cls]}"
    return cls(text, status=status, reason=reason or google_status,
               google_message=message, retry_after=retry_delay)


def _field(value: Any, secrets: Sequence[str]) -> str:
    """A string field of an error answer, safe to show: else ""."""
    if not isinstance(value, str):
        return ""
    return _unicode(errors.scrub(value, secrets))[:MAX_FIELD_CHARS]


def _classify(status: int, reason: str, message: str) -> Type[errors.APIError]:
    if reason in _REASON_ERRORS:
        return _REASON_ERRORS[reason]
    lowered = message.lower()
    if status == 401 and "api keys are not supported" in lowered:
        return errors.KeyTypeError
    if status == 403 and ("unregistered callers" in lowered or "valid api key" in lowered):
        return errors.InvalidKeyError
    if status == 403 and "has not been used in project" in lowered:
        return errors.APINotEnabledError
    if status == 400 and "model is currently not supported" in lowered:
        return errors.ModelNotSupportedError
    if status == 400 and "api key not valid" in lowered:
        return errors.InvalidKeyError
    if status == 404:
        return errors.EndpointError
    if status == 429:
        return errors.QuotaError
    if status in (401, 403):
        return errors.CredentialsError
    if status == 504:
        return errors.DeadlineError
    if status >= 500:
        return errors.UnavailableError
    return errors.RequestRejectedError


def parse_duration(value: Any) -> Optional[float]:
    """Google's JSON Duration ("1.5s") or an HTTP Retry-After seconds value, in seconds,
    at most MAX_RETRY_HINT; None for anything else (an HTTP date, "inf", garbage)."""
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        return None
    text = str(value).strip()
    if len(text) > 32:
        return None
    try:
        seconds = float(text[:-1] if text.endswith("s") else text)
    except ValueError:
        return None
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return min(seconds, MAX_RETRY_HINT)
