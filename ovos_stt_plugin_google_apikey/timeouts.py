"""A hard deadline for requests. Socket timeouts bound each read, not a whole answer: a
server that trickles one byte a second never times out. So each attempt arms a Watchdog that
shuts the attempt's socket down at the deadline (the blocked read then fails at once), and a
caller waiting for a free pooled connection waits no longer than its own deadline allows.

Use ``DeadlineAdapter`` on the session, and around each request ``begin(seconds)`` /
``end()`` in the thread that sends it.

Uploads are bounded by progress, not by the answer's deadline: an ``Upload`` body makes each
16 KB block's send fail after ``UPLOAD_STALL`` s without progress, and at its end waits until
the peer has acknowledged every byte (the kernel and a home router may hold seconds of audio
at 1 Mbit/s) before calling ``on_sent``, where the caller starts the answer's deadline.
"""
from __future__ import annotations

import heapq
import itertools
import select
import socket
import struct
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

from . import errors

UPLOAD_STALL = 5.0           # seconds an upload may make no progress before it is given up
ACK_POLL = 0.01              # seconds between looks at the unacknowledged bytes

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

_ACTIVE: Dict[int, Any] = {}      # thread id -> the connection that thread is using
_POOL_WAIT: Dict[int, float] = {}  # thread id -> longest wait for a free pooled connection


class _Watched:
    def request(self, *args: Any, **kwargs: Any) -> Any:
        _ACTIVE[threading.get_ident()] = self
        return super().request(*args, **kwargs)  # type: ignore[misc]


class _HTTPConnection(_Watched, HTTPConnection):
    pass


class _HTTPSConnection(_Watched, HTTPSConnection):
    pass


class _WaitBounded:
    """A full (blocking) pool makes a caller wait; no longer than its own deadline allows."""

    def _get_conn(self, timeout: Optional[float] = None) -> Any:
        if timeout is None:
            timeout = _POOL_WAIT.get(threading.get_ident())
        return super()._get_conn(timeout)  # type: ignore[misc]


class _HTTPPool(_WaitBounded, HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(_WaitBounded, HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


class DeadlineAdapter(HTTPAdapter):
    POOLS = {"http": _HTTPPool, "https": _HTTPSPool}

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = self.POOLS

    def proxy_manager_for(self, proxy: str, **kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **kwargs)
        if not proxy.lower().startswith("socks"):     # SOCKS managers bring their own pools
            manager.pool_classes_by_scheme = self.POOLS
        return manager


class Watchdog:
    """Shuts the calling thread's HTTP connection down in ``seconds`` unless cancelled first."""

    def __init__(self, seconds: float) -> None:
        self._thread_id = threading.get_ident()
        self._lock = threading.Lock()      # cancel() and firing exclude each other
        self.done = False
        self.fired = False
        _ALARMS.arm(time.monotonic() + seconds, self)

    def fire(self) -> None:
        with self._lock:
            if self.done:
                return
            self.fired = True
            sock = getattr(_ACTIVE.get(self._thread_id), "sock", None)
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cancel(self) -> None:
        with self._lock:
            self.done = True
        _ALARMS.cancelled()


class _Alarms:
    """One thread fires every Watchdog of the process, earliest first: a thread per request
    (threading.Timer) cost ~130 us of CPU to start, twice per Google request."""

    PURGE_AT = 256                 # cancelled entries kept before the heap is rebuilt

    def __init__(self) -> None:
        self._heap: List[Tuple[float, int, Watchdog]] = []
        self._wake = threading.Condition()
        self._order = itertools.count()
        self._thread: Optional[threading.Thread] = None
        self._cancelled = 0

    def arm(self, when: float, watchdog: Watchdog) -> None:
        with self._wake:
            heapq.heappush(self._heap, (when, next(self._order), watchdog))
            if self._thread is None or not self._thread.is_alive():    # first use, or forked
                self._thread = threading.Thread(target=self._run, name="google-stt-deadlines",
                                                daemon=True)
                self._thread.start()
            elif self._heap[0][2] is watchdog:     # earlier than what the thread waits for
                self._wake.notify()

    def cancelled(self) -> None:
        # Cancelled watchdogs stay queued until their time, unless many pile up.
        with self._wake:
            self._cancelled += 1
            if self._cancelled > self.PURGE_AT and self._cancelled * 2 > len(self._heap):
                self._heap = [entry for entry in self._heap if not entry[2].done]
                heapq.heapify(self._heap)
                self._cancelled = 0

    def _run(self) -> None:
        while True:
            with self._wake:
                while True:
                    while self._heap and self._heap[0][2].done:
                        heapq.heappop(self._heap)
                        self._cancelled = max(0, self._cancelled - 1)
                    now = time.monotonic()
                    if self._heap and self._heap[0][0] <= now:
                        due = heapq.heappop(self._heap)[2]
                        break
                    self._wake.wait(self._heap[0][0] - now if self._heap else None)
            due.fire()


_ALARMS = _Alarms()


def begin(pool_wait: float) -> None:
    """This thread is about to send a request that may wait ``pool_wait`` s for a connection."""
    _POOL_WAIT[threading.get_ident()] = pool_wait


def end() -> None:
    """This thread's request is over: forget its connection and its pool wait."""
    _ACTIVE.pop(threading.get_ident(), None)
    _POOL_WAIT.pop(threading.get_ident(), None)


class Upload:
    """A request body for requests/urllib3, read in blocks by the sending thread.

    ``on_sent()`` runs in that thread once the last byte is acknowledged (or the peer has
    answered already). Raises DeadlineError from ``read`` when the acknowledgements stall.
    """

    def __init__(self, data: bytes, on_start: Callable[[], None],
                 on_sent: Callable[[], None]) -> None:
        self._data = memoryview(data)
        self._pos = 0
        self._on_start, self._on_sent = on_start, on_sent
        self.started_at: Optional[float] = None
        self.sent_at: Optional[float] = None

    def __len__(self) -> int:           # requests sends Content-Length, not chunks
        return len(self._data) - self._pos

    def read(self, size: int = -1) -> bytes:
        if self.started_at is None:
            self.started_at = time.monotonic()
            self._on_start()
            sock = _active_socket()
            if sock is not None:        # each block's send: no progress for this long fails
                sock.settimeout(UPLOAD_STALL)
        if self._pos >= len(self._data):
            if self.sent_at is None:
                wait_acknowledged(UPLOAD_STALL)
                self.sent_at = time.monotonic()
                self._on_sent()
            return b""
        end = len(self._data) if size is None or size < 0 else self._pos + size
        block = self._data[self._pos:end].tobytes()
        self._pos += len(block)
        return block


def _active_socket() -> Optional[socket.socket]:
    return getattr(_ACTIVE.get(threading.get_ident()), "sock", None)


def wait_acknowledged(stall: float) -> None:
    """Wait until the peer has acknowledged all bytes this thread's connection sent.

    Returns at once where the kernel cannot tell (not Linux), or when the peer has
    answered. Raises DeadlineError when the unacknowledged bytes do not shrink for ``stall`` s.
    """
    sock = _active_socket()
    if sock is None:
        return
    try:
        import fcntl
        import termios
        fd = sock.fileno()
        least, since = None, time.monotonic()
        while True:
            pending = struct.unpack("i", fcntl.ioctl(fd, termios.TIOCOUTQ, b"\0\0\0\0"))[0]
            if pending <= 0:
                return
            if least is None or pending < least:
                least, since = pending, time.monotonic()
            elif time.monotonic() - since > stall:
                raise errors.DeadlineError(
                    f"the upload made no progress for {stall:g} s: the connection stalled")
            if select.select([fd], [], [], ACK_POLL)[0]:
                return
    except (ImportError, AttributeError, OSError, ValueError):
        return
