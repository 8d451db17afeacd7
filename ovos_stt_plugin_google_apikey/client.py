"""The HTTP transport to Google: one pooled session, the key header, retries inside a deadline."""
from __future__ import annotations

import json
import os
import random
import socket
import threading
import time
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple, Union
from urllib.parse import urljoin, urlsplit

import requests
import urllib3

from . import errors, timeouts
from .connections import ReportingAdapter
from .log import ModuleLog
from .settings import Settings
from .version import __version__
from .wire import RECOGNIZE_PATH, body_chunks, parse_duration, parse_error

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
    Redirects are never followed: the key would go along to wherever they point.
    """

    def __init__(self, settings: Settings, pool_size: int = DEFAULT_POOL_SIZE) -> None:
        self.settings = settings
        self.url = settings.endpoint + RECOGNIZE_PATH
        self.endpoint_shown = settings.endpoint_shown
        self._closed = False
        # Proxy settings (HTTPS_PROXY, NO_PROXY) and a CA bundle (REQUESTS_CA_BUNDLE) are read
        # once here, as requests' Session reads them.
        self._proxies = requests.utils.get_environ_proxies(self.url)
        self._verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
        self._secrets = settings.secrets + _proxy_secrets(self._proxies.values())
        # Each request is this one with its body: requests prepares the URL and the endpoint's
        # user:password as Basic auth once, and its adapter's urllib3 pool sends it (what
        # Session.post does per request, less its cookies, hooks and settings merges: half the
        # CPU of a request, bench/peers.py). Redirects are never followed, cookies never kept.
        self._recognize = requests.Request("POST", self.url, headers={
            API_KEY_HEADER: settings.key,
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": f"ovos-stt-plugin-google-apikey/{__version__}",
        }).prepare()
        self._warm = requests.Request("HEAD", settings.endpoint + "/", headers={
            "User-Agent": self._recognize.headers["User-Agent"]}).prepare()
        self.pool_size = 0
        self.ensure_pool_size(pool_size)
        # Told of every attempt: (Google's 200 JSON or the APIError, seconds it took, whether it
        # was a retry). The server counts attempts, retries and billed time with it.
        self.on_attempt: Optional[Callable[[Any, float, bool], None]] = None

    def __repr__(self) -> str:
        return f"SpeechClient(endpoint={self.endpoint_shown!r})"

    def ensure_pool_size(self, size: int) -> None:
        """Allow at least ``size`` requests in flight at once. Call before sending requests: the
        pool is replaced, and connections already open in it are closed."""
        if size <= self.pool_size:
            return
        self.pool_size = size
        # More concurrent callers than connections wait for a free slot, within their own
        # deadline, instead of opening (and then discarding) extra TLS connections to Google.
        self._slots = threading.BoundedSemaphore(size)
        old = getattr(self, "_adapter", None)
        self._adapter = ReportingAdapter(size)
        self._routes: Dict[str, Any] = {}
        if old is not None:
            old.close()

    def close(self) -> None:
        """Later calls raise ClosedError."""
        self._closed = True
        self._adapter.close()

    def _check_open(self) -> None:
        if self._closed:
            raise errors.ClosedError(errors.SHUT_DOWN)

    def recognize(self, body: Dict[str, Any],
                  deadline: Union[timeouts.Deadline, float, None] = None) -> Dict[str, Any]:
        """POST the body, retrying transient failures until ``deadline`` (a Deadline, or a
        time.monotonic() instant; by default ``timeout`` from now).

        Time spent uploading does not count: the deadline moves on by each upload's length
        (see ``timeouts``). Returns Google's 200 JSON. Raises CredentialsError, QuotaError,
        RequestRejectedError, UnavailableError, DeadlineError or ClosedError.
        """
        self._check_open()
        if deadline is None:
            deadline = timeouts.Deadline.after(self.settings.timeout)
        elif not isinstance(deadline, timeouts.Deadline):
            deadline = timeouts.Deadline(float(deadline))
        payload = body_chunks(body)
        attempt = 0
        while True:
            started = time.monotonic()
            call = timeouts.Call(deadline)
            result = self._exchange(payload, call)
            deadline = call.deadline            # moved on by the time this upload took
            self._observe(result, started, attempt > 0)
            if isinstance(result, dict):
                return result
            attempt += 1
            if not _retryable(result) or attempt > self.settings.retries:
                raise result
            wait = result.retry_after if result.retry_after is not None else _backoff(attempt)
            if wait >= deadline.remaining():
                raise type(result)(f"{result} (not retried: the next try, in {wait:.1f} s, would "
                                   f"pass the {self.settings.timeout:g} s timeout)",
                                   status=result.status, reason=result.reason,
                                   google_message=result.google_message,
                                   retry_after=result.retry_after) from result
            LOG.info("Google STT attempt %d failed (%s); retrying in %.2f s",
                     attempt, result.reason or result.status or type(result).__name__, wait)
            time.sleep(wait)

    def _observe(self, result: Any, started: float, retry: bool) -> None:
        if self.on_attempt is not None:
            self.on_attempt(result, time.monotonic() - started, retry)

    def recognize_streaming(self, parts: Iterable[bytes]) -> Dict[str, Any]:
        """POST a body that is still being made (chunked transfer encoding), e.g. while the
        user speaks. The deadline rule is ``recognize``'s: ``timeout``, not counting the upload.
        One attempt: the caller keeps the audio and falls back on ``recognize``.

        Returns Google's 200 JSON; raises an APIError subclass. An exception raised by
        ``parts`` itself propagates unchanged (the request is abandoned).
        """
        self._check_open()
        call = timeouts.Call(timeouts.Deadline.after(self.settings.timeout))
        started = time.monotonic()
        result = self._exchange(iter(parts), call)       # an iterator: always chunked
        self._observe(result, started, False)
        if isinstance(result, errors.APIError):
            raise result
        return result

    def warm(self) -> None:
        """Open a pooled connection to the endpoint (DNS, TCP, TLS) without a recognition.

        A keyless HEAD of the endpoint's root: Google answers 404 at no cost. Skipped when
        every connection is in use. Failures are only logged; the recognition that follows
        reports them properly.
        """
        slots = self._slots
        if self._closed or not slots.acquire(blocking=False):
            return
        try:
            resp = self._open(self._warm, None, CONNECT_TIMEOUT)
            if 300 <= resp.status < 400:
                LOG.debug("%s", self._redirect(resp).args[0])
            resp.read()                 # a HEAD's answer has no body: the connection stays pooled
            _release(resp, read=True)
        except (urllib3.exceptions.HTTPError, OSError, requests.RequestException) as exc:
            LOG.debug("warming the connection to %s failed: %s", self.endpoint_shown,
                      errors.scrub(_describe(exc), self._secrets))
        finally:
            slots.release()

    def _exchange(self, data: Any, call: timeouts.Call) -> Any:
        """One POST of ``data`` within ``call``'s deadline: the 200 JSON as a dict, or the
        APIError it ended in (returned, not raised)."""
        slots = self._slots
        if call.deadline.expired or not slots.acquire(timeout=call.deadline.remaining()):
            return self._late()
        try:
            with call:
                status, retry_after, content = self._post(data, call)
        except errors.APIError as exc:          # a redirect, a stalled upload, a large answer
            return exc
        except (urllib3.exceptions.HTTPError, OSError, requests.RequestException) as exc:
            return self._failed(exc, call)
        finally:
            slots.release()
        if call.fired:                          # the answer was cut off at the deadline
            return self._late()
        return self._answer(status, retry_after, content)

    def _post(self, data: Any, call: timeouts.Call) -> Tuple[int, Optional[str], bytes]:
        resp = self._open(self._recognize, data, call.deadline.remaining())
        read = False
        try:
            if 300 <= resp.status < 400:
                raise self._redirect(resp)
            content = _read(resp, call.deadline)
            read = True
            return resp.status, resp.headers.get("Retry-After"), content
        finally:
            call.finish()       # before the connection goes back to the pool
            _release(resp, read)

    def _open(self, request: requests.PreparedRequest, body: Any, timeout: float) -> Any:
        """Send ``request`` with ``body`` (bytes; a tuple of bytes, sent one after the other
        under one Content-Length; or an iterator of parts for a chunked body): urllib3's
        response, its body not read yet. Raises urllib3's errors, OSError, or requests' for a
        proxy URL it cannot use."""
        route = self._routes.get(str(request.method))
        if route is None:       # the pool, URL and headers, as HTTPAdapter.send picks them
            adapter, headers = self._adapter, dict(request.headers)
            headers.pop("Content-Length", None)         # prepared without the body
            route = self._routes[str(request.method)] = (
                adapter.pool_for(request, self._verify, self._proxies),
                adapter.request_url(request, self._proxies), headers)
        pool, url, headers = route
        sized = isinstance(body, (bytes, tuple))
        if sized:
            length = len(body) if isinstance(body, bytes) else sum(len(piece) for piece in body)
            headers = {**headers, "Content-Length": str(length)}
        return pool.urlopen(request.method, url, body=body, headers=headers, redirect=False,
                            assert_same_host=False, retries=False, preload_content=False,
                            decode_content=False, chunked=body is not None and not sized,
                            timeout=urllib3.Timeout(connect=min(CONNECT_TIMEOUT, timeout), read=timeout))

    def _late(self) -> errors.DeadlineError:
        return errors.DeadlineError(
            f"no answer from Google within the {self.settings.timeout:g} s timeout")

    def _failed(self, exc: Exception, call: timeouts.Call) -> errors.APIError:
        """The error for a request that raised ``exc`` (requests' or urllib3's)."""
        if call.uploading and _timed_out(exc):
            return errors.DeadlineError(
                f"the upload to {self.endpoint_shown} made no progress for "
                f"{timeouts.UPLOAD_STALL:g} s: the connection stalled")
        if _is_timeout(exc) or call.fired or call.deadline.expired:
            return self._late()
        return errors.UnavailableError(errors.scrub(
            f"cannot reach {self.endpoint_shown}: {_describe(exc)}", self._secrets))

    def _answer(self, status: int, retry_after: Optional[str], content: bytes) -> Any:
        """Google's 200 JSON as a dict, or the APIError an answer stands for."""
        if status < 200 or 200 < status < 300:
            return errors.UnavailableError(
                f"{self.endpoint_shown} answered {status}, which Google's speech:recognize never "
                "does; a proxy or another server may be in the way", status=status)
        try:
            data = json.loads(content)
        except (ValueError, RecursionError):    # RecursionError: JSON nested too deep
            data = None
        if status == 200:
            if isinstance(data, dict):
                return data
            return errors.UnavailableError(
                f"{self.endpoint_shown} answered 200 with a body that is not JSON, or not a JSON "
                f"object ({len(content)} bytes); a proxy or captive portal may be in the way",
                status=200)
        error = parse_error(status, data, self._secrets)
        hint = parse_duration(retry_after) if retry_after is not None else None
        if hint is None:
            hint = error.retry_after
        error.retry_after = hint       # finite, 0 to MAX_RETRY_HINT; never waited for past the deadline
        return error

    def _redirect(self, resp: Any) -> errors.UnavailableError:
        """A 3xx as an error naming where it pointed (its host only: a URL may carry anything)."""
        return errors.UnavailableError(errors.scrub(
            f"{self.endpoint_shown} answered {resp.status} redirecting to "
            f"{_host(self.url, resp.headers.get('Location', ''))}; redirects are not followed, "
            "so the key goes nowhere else. If that is where Google is, set 'endpoint' to it",
            self._secrets), status=resp.status)


def _host(base: str, location: str) -> str:
    """The host (and port) a Location header points to, or a description of it."""
    try:
        parts = urlsplit(urljoin(base, location[:2000]))
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "an unparsable address"
    host = "".join(c for c in host if c.isalnum() or c in ".-_:")[:255]
    return f"{host}{port}" if host else "no address"


def _proxy_secrets(proxies: Iterable[str]) -> Tuple[str, ...]:
    """The passwords of proxy URLs (HTTPS_PROXY=http://user:password@proxy:3128)."""
    found: List[str] = []
    for proxy in proxies:
        try:
            parts = urlsplit(proxy)
            found.append(parts.password or "")
        except ValueError:
            continue
    return tuple(s for s in found if len(s) >= 3)


def _timed_out(exc: BaseException) -> bool:
    """Whether a socket timeout is in ``exc``'s chain (requests' and urllib3's wrapping)."""
    seen = 0
    cause: Optional[BaseException] = exc
    while cause is not None and seen < 10:
        if _is_timeout(cause):
            return True
        nested = next((a for a in cause.args if isinstance(a, BaseException)), None)
        reason = getattr(cause, "reason", None)
        cause = cause.__cause__ or cause.__context__ or nested or (
            reason if isinstance(reason, BaseException) else None)
        seen += 1
    return False


def _is_timeout(exc: BaseException) -> bool:
    # urllib3's NewConnectionError (refused, unreachable) is a ConnectTimeoutError too.
    return (isinstance(exc, (socket.timeout, TimeoutError, urllib3.exceptions.TimeoutError))
            and not isinstance(exc, urllib3.exceptions.NewConnectionError))


def _read(resp: Any, deadline: timeouts.Deadline) -> bytes:
    chunks: List[bytes] = []
    size = 0
    for chunk in resp.stream(READ_CHUNK, decode_content=True):     # a gzip bomb is counted inflated
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_RESPONSE_BYTES:
            raise errors.UnavailableError(f"Google's answer is over {MAX_RESPONSE_BYTES} bytes")
        if deadline.expired:
            raise errors.DeadlineError("Google's answer did not arrive within the timeout")
    return b"".join(chunks)


def _release(resp: Any, read: bool) -> None:
    """Hand the connection back to the pool: closed first unless its answer was read whole."""
    if not read:
        resp.close()
    resp.release_conn()


def _retryable(error: errors.APIError) -> bool:
    if isinstance(error, errors.UnavailableError):     # connection, 5xx, unreadable answer
        return error.status is None or error.status in RETRY_STATUSES or error.status == 200
    return error.status in RETRY_STATUSES


_JITTER = random.Random()     # its own: the host's (OVOS's, a test's) random state stays its own


def _backoff(attempt: int) -> float:
    """Exponential backoff with jitter: half fixed, half random."""
    ceiling = min(BACKOFF_MAX, BACKOFF_BASE * 2 ** (attempt - 1))
    return ceiling / 2 + _JITTER.uniform(0, ceiling / 2)


def _describe(exc: BaseException) -> str:
    """The innermost cause in one line (requests' own text repeats the pool internals)."""
    cause: BaseException = exc
    while cause.__cause__ is not None or cause.__context__ is not None:
        cause = cause.__cause__ or cause.__context__  # type: ignore[assignment]
    return f"{type(exc).__name__}: {cause}"
