"""The exceptions this package raises, each saying what the user must do.

    GoogleSTTError
    ├── ConfigError            a setting is missing or invalid: fix mycroft.conf / env
    ├── AudioError             the audio cannot be sent: wrong format, empty, too long
    │   ├── UnsupportedAudioError  not audio we read (text, a form, MP3 without a decoder): send another format
    │   └── AudioTooLongError      longer than the caller's limit (the server's per-request budget)
    └── APIError               Google answered with an error, or did not answer
        ├── CredentialsError   fix the key or the Google Cloud project
        │   ├── InvalidKeyError        key unknown, expired, or missing
        │   ├── APINotEnabledError     Speech-to-Text API / billing not enabled, project suspended
        │   ├── KeyRestrictedError     the key is restricted to other APIs, referrers or IPs
        │   └── KeyTypeError           this kind of key is not accepted (use a standard AIza... key)
        ├── QuotaError         wait: Google's request quota is used up (429)
        ├── RequestRejectedError  Google refused the request as sent (other 4xx)
        │   ├── ModelNotSupportedError  the model does not support the language
        │   └── EndpointError  the endpoint has no such method (404): fix 'endpoint'
        └── UnavailableError   try again: 5xx, connection failure, redirect, unreadable answer
            ├── DeadlineError  no answer within the configured timeout, or a stalled upload
            └── ClosedError    the engine was shut down

No ``requests`` exception escapes this package; they are wrapped with ``raise ... from``.
Messages and every attribute never contain the API key or the endpoint's credentials.
"""
from __future__ import annotations

import re
from typing import Optional, Sequence
from urllib.parse import quote

_UNPRINTABLE = re.compile(r"[^\S ]+|[\x00-\x1f\x7f-\x9f]+")


def scrub(text: str, secrets: Sequence[str]) -> str:
    """``text`` on one line, with each secret (as is or URL-quoted, in any case: a host name
    comes back lower-cased) replaced by ***."""
    for secret in secrets:
        if secret:
            for form in {secret, quote(secret, safe="")}:
                text = re.sub(re.escape(form), "***", text, flags=re.IGNORECASE)
    return _UNPRINTABLE.sub(" ", text)

SHUT_DOWN = "the Google STT engine was shut down; create a new one"
CONSOLE_CREDENTIALS = "https://console.cloud.google.com/apis/credentials"
CONSOLE_SPEECH_API = "https://console.cloud.google.com/apis/library/speech.googleapis.com"
CONSOLE_QUOTAS = "https://console.cloud.google.com/apis/api/speech.googleapis.com/quotas"


class GoogleSTTError(Exception):
    """Base class of every error raised by this package."""


class ConfigError(GoogleSTTError, ValueError):
    """A setting is missing or invalid."""


class AudioError(GoogleSTTError, ValueError):
    """The audio cannot be decoded or cannot be sent to Google."""


class UnsupportedAudioError(AudioError):
    """The bytes are not audio in a format this package reads; the message says what to send.

    ``kind`` names the refusal (decoding's constants: a container to convert, not audio, text,
    a missing decoder, ...) and ``found`` what the bytes are ("an M4A (MP4 audio) file"), so a
    caller can phrase it for its own users (the CLI speaks of files and its options)."""

    def __init__(self, message: str, *, kind: str = "", found: str = "") -> None:
        super().__init__(message)
        self.kind = kind
        self.found = found


class AudioTooLongError(AudioError):
    """The audio lasts longer than the limit the caller set (found before decoding all of it)."""


class APIError(GoogleSTTError):
    """Google answered with an error, or did not answer in a usable way.

    ``status`` is the HTTP status (None when there was no answer), ``reason`` the
    ``google.rpc.ErrorInfo`` reason or ``google.rpc.Status`` name, ``google_message``
    Google's own text.
    """

    def __init__(self, message: str, *, status: Optional[int] = None,
                 reason: str = "", google_message: str = "",
                 retry_after: Optional[float] = None) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.google_message = google_message
        self.retry_after = retry_after


class CredentialsError(APIError):
    """The key or the Google Cloud project behind it must be fixed."""


class InvalidKeyError(CredentialsError):
    """The key is unknown to Google, expired, or was not sent."""


class APINotEnabledError(CredentialsError):
    """The key's project has not enabled Speech-to-Text (or billing), or is suspended."""


class KeyRestrictedError(CredentialsError):
    """The key is restricted away from Speech-to-Text (API, referrer, IP or app)."""


class KeyTypeError(CredentialsError):
    """Google does not accept this kind of key for Speech-to-Text."""


class QuotaError(APIError):
    """Google's request quota for the project is used up (HTTP 429)."""


class RequestRejectedError(APIError):
    """Google refused the request as sent: audio format, language, model, size (4xx)."""


class ModelNotSupportedError(RequestRejectedError):
    """The configured model does not support the requested language."""


class EndpointError(RequestRejectedError):
    """The endpoint answered 404: 'endpoint' does not lead to speech:recognize."""


class UnavailableError(APIError):
    """Google could not be reached, failed (5xx), redirected, or sent an unreadable answer."""


class DeadlineError(UnavailableError):
    """Google did not answer within the configured timeout, or the upload stalled."""


class ClosedError(UnavailableError):
    """The engine was shut down; build a new one."""
