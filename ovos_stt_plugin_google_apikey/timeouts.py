"""A hard deadline for requests. Socket timeouts bound each read, not a whole answer: a
server that trickles one byte a second never times out. So each attempt arms a Watchdog that
shuts the attempt's socket down at the deadline (the blocked read then fails at once), and a
caller waiting for a free pooled connection waits no longer than its own deadline allows.

Use ``DeadlineAdapter`` on the session, and around each request ``begin(seconds)`` /
``end()`` in the thread that sends it.
"""
from __future__ import annotations

import socket
import threading
from typing import Any, Dict, Optional

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
        self._done = False
        self.fired = False
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True
        self._timer.start()

    def _fire(self) -> None:
        with self._lock:
            if self._done:
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
            self._done = True
        self._timer.cancel()


def begin(pool_wait: float) -> None:
    """This thread is about to send a request that may wait ``pool_wait`` s for a connection."""
    _POOL_WAIT[threading.get_ident()] = pool_wait


def end() -> None:
    """This thread's request is over: forget its connection and its pool wait."""
    _ACTIVE.pop(threading.get_ident(), None)
    _POOL_WAIT.pop(threading.get_ident(), None)
