"""The HTTP transport to Google: one pooled session, the key header, retries inside a deadline."""
from __future__ import annotations

import json
import os
import random
import time
from http.cookiejar import DefaultCookiePolicy
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional

import requests
import urllib3

from . import timeouts
from . import errors
from .log import ModuleLog
from .settings import Settings
from .version import __version__
from .wire import RECOGNIZE_PATH, dump_body, parse_duration, parse_error

LOG = ModuleLog(__name__)

API_KEY_HEADER = "X-Goog-Api-Key"
RETRY_STATUSES = frozenset({429, 500, 503, 504})
CONNECT_TIMEOUT = 3.05          # seconds; a little over a TCP retransmit window
BACKOFF_BASE = 0.25             # seconds before the first retry, doubled each time
BACKOFF_MAX = 4.0
MAX_RESPONSE_BYTES = 16 * 1024 * 1024
READ_CHUNK = 64 * 1024
DEFAULT_POOL_SIZE = 10


class SpeechClient:
    """Sends speech:recognize requests. Thread-safe: share one per engine.

    ``recognize`` raises the APIError subclasses of ``errors``; never a requests exception.
    """

    def __init__(self, settings: Settings, pool_size: int = DEFAULT_POOL_SIZE) -> None:
        self.settings = settings
        self.url = settings.endpoint + RECOGNIZE_PATH
        self._session = requests.Session()
        # Google sets no cookies we need; a shared jar would be mutable state across threads.
        self._session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))
        # Proxy settings (HTTPS_PROXY, NO_PROXY) and a CA bundle (REQUESTS_CA_BUNDLE) are read
        # once here: with trust_env, requests would look them up, and stat ~/.netrc, per request.
        self._session.trust_env = False
        self._session.proxies.update(requests.utils.get_environ_proxies(self.url))
        self._session.verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
        # pool_block: more concurrent callers than connections wait for a free one instead of
        # opening (and then discarding) extra TLS connections to Google.
        self.pool_size = 0
        self.ensure_pool_size(pool_size)
        self._session.headers.update({
            API_KEY_HEADER: settings.key,
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": f"ovos-stt-plugin-google-apikey/{__version__}",
        })

    def __repr__(self) -> str:
        return f"SpeechClient(url={self.url!r})"

    def ensure_pool_size(self, size: int) -> None:
        """Allow at least ``size`` requests in flight at once. Call before sending requests: the
        pool is replaced, and connections already open in it are closed."""
        if size <= self.pool_size:
            return
        self.pool_size = size
        adapter = timeouts.DeadlineAdapter(pool_connections=1, pool_maxsize=size, max_retries=0,
                                   pool_block=True)
        old = self._session.adapters.get("https://")
        self._session.mount("https://", adapter)
        self._session.mount("http://", adapter)
        if old is not None:
            old.close()

    def close(self) -> None:
        self._session.close()

    def recognize(self, body: Dict[str, Any], deadline: Optional[float] = None) -> Dict[str, Any]:
        """POST the body, retrying transient failures until ``deadline`` (time.monotonic()).

        Returns Google's 200 JSON. Raises CredentialsError, QuotaError, RequestRejectedError,
        UnavailableError or DeadlineError.
        """
        if deadline is None:
            deadline = time.monotonic() + self.settings.timeout
        payload = dump_body(body)
        attempt = 0
        while True:
            error = self._attempt(payload, deadline)
            if isinstance(error, dict):
                return error
            attempt += 1
            if not _retryable(error) or attempt > self.settings.retries:
                raise error
            wait = error.retry_after if error.retry_after is not None else _backoff(attempt)
            remaining = deadline - time.monotonic()
            if wait >= remaining:
                raise type(error)(f"{error} (not retried: the next try, in {wait:.1f} s, would pass "
                                  f"the {self.settings.timeout:g} s timeout)",
                                  status=error.status, reason=error.reason,
                                  google_message=error.google_message,
                                  retry_after=error.retry_after) from error
            LOG.info("Google STT attempt %d failed (%s); retrying in %.2f s",
                     attempt, error.reason or error.status or type(error).__name__, wait)
            time.sleep(wait)

    def _attempt(self, payload: bytes, deadline: float) -> Any:
        """One POST: the 200 JSON as a dict, or the APIError it ended in (returned, not raised)."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return errors.DeadlineError(
                f"no answer from Google within the {self.settings.timeout:g} s timeout")
        watchdog = timeouts.Watchdog(remaining)
        try:
            return self._exchange(payload, lambda: deadline, remaining, [watchdog])
        finally:
            watchdog.cancel()

    def recognize_streaming(self, parts: Iterable[bytes]) -> Dict[str, Any]:
        """POST a body that is still being made (chunked transfer encoding), e.g. while the
        user speaks. The ``timeout`` starts when ``parts`` is exhausted. One attempt: the
        caller keeps the audio and falls back on ``recognize``.

        Returns Google's 200 JSON; raises an APIError subclass. An exception raised by
        ``parts`` itself propagates unchanged (the request is abandoned).
        """
        deadline = [float("inf")]
        watchdog: List[timeouts.Watchdog] = []

        def body() -> Iterator[bytes]:
            yield from parts
            deadline[0] = time.monotonic() + self.settings.timeout
            watchdog.append(timeouts.Watchdog(self.settings.timeout))

        try:
            result = self._exchange(body(), lambda: deadline[0], self.settings.timeout, watchdog)
        finally:
            for timer in watchdog:
                timer.cancel()
        if isinstance(result, errors.APIError):
            raise result
        return result

    def warm(self) -> None:
        """Open a pooled connection to the endpoint (DNS, TCP, TLS) without a recognition.

        A keyless HEAD of the endpoint's root: Google answers 404 at no cost. Failures are
        only logged; the recognition that follows reports them properly.
        """
        try:
            self._session.head(self.settings.endpoint + "/", headers={API_KEY_HEADER: None},
                               timeout=(CONNECT_TIMEOUT, CONNECT_TIMEOUT)).close()
        except requests.RequestException as exc:
            LOG.debug("warming the connection to %s failed: %s", self.settings.endpoint, exc)

    def _exchange(self, data: Any, deadline: Callable[[], float], read_timeout: float,
                  watchdogs: List[timeouts.Watchdog]) -> Any:
        """Send, read within ``deadline()``, and map the answer: a dict or an APIError."""
        timeouts.begin(read_timeout)
        try:
            with self._session.post(self.url, data=data, stream=True,
                                    timeout=(min(CONNECT_TIMEOUT, read_timeout), read_timeout)) as resp:
                content = _read(resp, deadline())
                status, retry_after = resp.status_code, resp.headers.get("Retry-After")
        except errors.DeadlineError as exc:
            return exc
        except (requests.RequestException, urllib3.exceptions.HTTPError) as exc:
            # HTTPError: urllib3's EmptyPoolError (no free connection in time) is not wrapped.
            timed_out = isinstance(exc, (requests.Timeout, urllib3.exceptions.EmptyPoolError))
            if timed_out or any(w.fired for w in watchdogs) or time.monotonic() >= deadline():
                return errors.DeadlineError(
                    f"no answer from Google within the {self.settings.timeout:g} s timeout "
                    f"({type(exc).__name__})")
            return errors.UnavailableError(
                f"cannot reach {self.settings.endpoint}: {_describe(exc)}")
        finally:
            timeouts.end()
        try:
            data = json.loads(content)
        except ValueError:
            data = None
        if status == 200:
            if isinstance(data, dict):
                return data
            return errors.UnavailableError(
                f"Google answered 200 with a body that is not JSON ({len(content)} bytes); "
                "a proxy or captive portal may be in the way", status=200)
        error = parse_error(status, data, self.settings.key)
        if retry_after is not None and parse_duration(retry_after) is not None:
            error.retry_after = parse_duration(retry_after)
        return error


def _read(resp: requests.Response, deadline: float) -> bytes:
    chunks, size = [], 0
    for chunk in resp.iter_content(READ_CHUNK):
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_RESPONSE_BYTES:
            raise errors.UnavailableError(f"Google's answer is over {MAX_RESPONSE_BYTES} bytes")
        if time.monotonic() > deadline:
            raise errors.DeadlineError("Google's answer did not arrive within the timeout")
    return b"".join(chunks)


def _retryable(error: errors.APIError) -> bool:
    if isinstance(error, errors.UnavailableError):     # connection, 5xx, unreadable answer
        return error.status is None or error.status in RETRY_STATUSES or error.status == 200
    return error.status in RETRY_STATUSES


def _backoff(attempt: int) -> float:
    """Exponential backoff with jitter: half fixed, half random."""
    ceiling = min(BACKOFF_MAX, BACKOFF_BASE * 2 ** (attempt - 1))
    return ceiling / 2 + random.uniform(0, ceiling / 2)


def _describe(exc: requests.RequestException) -> str:
    """The innermost cause in one line (requests' own text repeats the pool internals)."""
    cause: BaseException = exc
    while cause.__cause__ is not None or cause.__context__ is not None:
        cause = cause.__cause__ or cause.__context__  # type: ignore[assignment]
    return f"{type(exc).__name__}: {cause}"
