"""Deadlines for requests to Google, and what holds them.

The rule: a request must be answered by its ``Deadline``, ``timeout`` s after it starts, but
uploading does not count: once the peer has acknowledged the whole upload, the deadline moves on
by the time the upload took. The upload is bounded by its progress instead: it fails when no byte
is acknowledged for ``UPLOAD_STALL`` s, so one that keeps moving is never cut.

Socket timeouts bound each read, not a whole answer (a server trickling a byte a second never
times out). So each request is a ``Call``: the connection urllib3 gives it reports to the Call
and tells it when the body's upload starts and ends (``connections``), and the Call's alarm
shuts that connection's socket down at the deadline, which makes the blocked read fail at once.
One thread sounds every alarm of the process.
"""
from __future__ import annotations

import heapq
import itertools
import select
import socket
import struct
import threading
import time
from contextvars import ContextVar, Token
from dataclasses import dataclass
from typing import Any, Callable, List, Optional, Tuple

from . import errors
from .log import ModuleLog

LOG = ModuleLog(__name__)

UPLOAD_STALL = 5.0           # seconds an upload may make no progress before it is given up
ACK_POLL = 0.01              # seconds between looks at the unacknowledged bytes


@dataclass(frozen=True)
class Deadline:
    """An instant on ``time.monotonic()``'s clock."""

    at: float

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        return cls(time.monotonic() + seconds)

    def remaining(self) -> float:
        """Seconds left; 0.0 once it has passed."""
        return max(0.0, self.at - time.monotonic())

    @property
    def expired(self) -> bool:
        return time.monotonic() >= self.at

    def extended(self, seconds: float) -> Deadline:
        return Deadline(self.at + seconds)


class Alarm:
    """A callback due at an instant; once cancelled it never runs."""

    __slots__ = ("callback", "cancelled")

    def __init__(self, callback: Callable[[], None]) -> None:
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        if not self.cancelled:
            self.cancelled = True
            _ALARMS.cancelled()


class _Alarms:
    """One thread runs every alarm of the process, earliest first: a thread per request
    (threading.Timer) cost ~130 us of CPU to start, twice per Google request."""

    PURGE_AT = 256                 # cancelled entries kept before the heap is rebuilt

    def __init__(self) -> None:
        self._heap: List[Tuple[float, int, Alarm]] = []
        self._wake = threading.Condition()
        self._order = itertools.count()
        self._thread: Optional[threading.Thread] = None
        self._cancelled = 0

    def arm(self, deadline: Deadline, callback: Callable[[], None]) -> Alarm:
        """Run ``callback`` in the alarm thread at ``deadline``, unless cancelled first."""
        alarm = Alarm(callback)
        with self._wake:
            heapq.heappush(self._heap, (deadline.at, next(self._order), alarm))
            if self._thread is None or not self._thread.is_alive():    # first use, or forked
                self._thread = threading.Thread(target=self._run, name="google-stt-deadlines",
                                                daemon=True)
                self._thread.start()
            elif self._heap[0][2] is alarm:     # earlier than what the thread waits for
                self._wake.notify()
        return alarm

    def cancelled(self) -> None:
        # Cancelled alarms stay queued until their time, unless many pile up.
        with self._wake:
            self._cancelled += 1
            if self._cancelled > self.PURGE_AT and self._cancelled * 2 > len(self._heap):
                self._heap = [entry for entry in self._heap if not entry[2].cancelled]
                heapq.heapify(self._heap)
                self._cancelled = 0

    def _run(self) -> None:
        while True:
            with self._wake:
                while True:
                    while self._heap and self._heap[0][2].cancelled:
                        heapq.heappop(self._heap)
                        self._cancelled = max(0, self._cancelled - 1)
                    now = time.monotonic()
                    if self._heap and self._heap[0][0] <= now:
                        due = heapq.heappop(self._heap)[2]
                        break
                    self._wake.wait(self._heap[0][0] - now if self._heap else None)
            try:
                due.callback()
            except BaseException:       # noqa: B036 - every later deadline depends on this thread
                LOG.exception("a deadline's alarm failed; the others still run")


_ALARMS = _Alarms()
arm = _ALARMS.arm

_CURRENT: ContextVar[Optional[Call]] = ContextVar("google_stt_call", default=None)


def current() -> Optional[Call]:
    """The Call this context is sending, if any."""
    return _CURRENT.get()


class Call:
    """One HTTP exchange held to its deadline. ``with call:`` around the request, in the
    context that sends it: the connection urllib3 picks then reports to this Call, and the
    alarm shuts it down at ``deadline``. ``finish()`` before the connection goes back to the
    pool, so a late alarm never touches a connection another request has taken.
    """

    def __init__(self, deadline: Deadline) -> None:
        self.deadline = deadline          # moved on by the upload's length once it is acknowledged
        self.connection: Any = None       # urllib3's, once it reports (attach)
        self.fired = False                # the deadline passed while the exchange was on
        self.upload_started: Optional[float] = None
        self.upload_done = False
        self._lock = threading.Lock()     # finishing and firing exclude each other
        self._finished = False
        self._alarm: Optional[Alarm] = None
        self._token: Optional[Token[Optional[Call]]] = None

    def __enter__(self) -> Call:
        self._token = _CURRENT.set(self)
        self._alarm = arm(self.deadline, self._fire)     # connecting and sending the headers
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.finish()
        if self._token is not None:
            _CURRENT.reset(self._token)

    @property
    def uploading(self) -> bool:
        return self.upload_started is not None and not self.upload_done

    def finish(self) -> None:
        """The exchange is over: the alarm never fires, the connection is forgotten."""
        with self._lock:
            self._finished = True
            self.connection = None
        if self._alarm is not None:
            self._alarm.cancel()

    def attach(self, connection: Any) -> None:
        """``connection`` (urllib3's) carries this exchange; see ``connections``."""
        with self._lock:
            if not self._finished:
                self.connection = connection

    def socket(self) -> Optional[socket.socket]:
        return os_socket(self.connection)

    def start_upload(self) -> None:
        """The body starts: from here on bounded by progress, not by the deadline."""
        self.upload_started = time.monotonic()
        if self._alarm is not None:
            self._alarm.cancel()
        sock = self.socket()
        if sock is not None:          # each block's send: no progress for this long fails
            sock.settimeout(UPLOAD_STALL)

    def end_upload(self) -> None:
        """The body is sent: wait for its acknowledgement, then the answer's deadline runs."""
        wait_acknowledged(self.socket(), UPLOAD_STALL)
        self.upload_done = True
        if self.upload_started is not None:
            self.deadline = self.deadline.extended(time.monotonic() - self.upload_started)
        self._alarm = arm(self.deadline, self._fire)

    def _fire(self) -> None:
        with self._lock:
            if self._finished:
                return
            self.fired = True
            sock = self.socket()
            if sock is not None:
                try:
                    # socket.socket's own shutdown: SSLSocket.shutdown() would also drop the
                    # TLS state from under the thread reading it.
                    socket.socket.shutdown(sock, socket.SHUT_RDWR)
                except OSError:       # closed already, or not connected yet
                    pass


def os_socket(connection: Any) -> Optional[socket.socket]:
    """The TCP socket under a urllib3 connection's TLS layers, or None. Through an https://
    proxy urllib3 runs TLS inside TLS with an ``SSLTransport``, which wraps (``.socket``) the
    proxy's SSLSocket and has no shutdown() of its own."""
    sock = getattr(connection, "sock", None)
    for _ in range(3):
        if sock is None or isinstance(sock, socket.socket):    # SSLSocket is one too
            return sock
        sock = getattr(sock, "socket", None)
    return None


def wait_acknowledged(sock: Optional[socket.socket], stall: float) -> None:
    """Wait until the peer has acknowledged all bytes sent on ``sock``.

    Returns at once where the kernel cannot tell (not Linux), or when the peer has
    answered. Raises DeadlineError when the unacknowledged bytes do not shrink for ``stall`` s.
    """
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
