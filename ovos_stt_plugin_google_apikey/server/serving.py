"""Serving the app: uvicorn with httptools behind a connection guard, signals, open files.

uvicorn alone accepts every connection and waits forever for a header that never ends (its
keep-alive timeout stops at the first byte), so 21,000 silent sockets used up the descriptors
and asyncio logged an accept() traceback per attempt. ``GuardedProtocol`` adds what it lacks:
a deadline for each request's header, a cap on open connections below the open-file limit
(the longest-idle connection makes room for a new one), and a refusal of bodies sent in
tiny chunks (each costs the event loop a parser callback)."""
from __future__ import annotations

import functools
import ipaddress
import logging
import signal
import time
from typing import Any, Dict, Optional

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ..log import ModuleLog
from .options import ServerOptions

LOG = ModuleLog(__package__ or "ovos_stt_plugin_google_apikey.server")

UVICORN_OPTIONS: Dict[str, Any] = dict(access_log=False, log_config=None, server_header=False)
FILE_SHARE = 0.75        # of the open-file limit, for client connections (the rest: Google, files)
ACCEPT_LOG_INTERVAL = 10.0
TINY_CHUNKS = 1024       # chunks a body may send before its average size is judged
MIN_AVERAGE_CHUNK = 64   # bytes: below that a chunked body costs the loop more than its bytes
BODY_HIGH_WATER = 512 * 1024   # bytes of a body received but not yet taken by the app


class Connections:
    """The open connections of one server process; the idle ones (waiting for a request's
    header) in the order they went idle, so the longest-idle can be closed first."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.open = 0
        self.idle: Dict["GuardedProtocol", None] = {}
        self.evicted = 0

    def admit(self, new: "GuardedProtocol") -> bool:
        """Count ``new``; at the cap, close the longest-idle connection for it, or refuse it."""
        if self.open >= self.cap:
            if not self.idle:
                return False
            oldest = next(iter(self.idle))
            self.idle.pop(oldest)
            oldest.transport.close()
            self.evicted += 1
        self.open += 1
        return True


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a header deadline, a connection cap and a chunk rule."""

    def __init__(self, *args: Any, connections: Connections, header_timeout: float,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._connections, self._header_timeout = connections, header_timeout
        self._header_timer: Optional[Any] = None
        self._counted = False
        self._chunks = self._chunk_bytes = 0

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self._counted = self._connections.admit(self)
        if not self._counted:               # every connection is busy: this one cannot wait
            transport.close()
            return
        self._await_header()

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self._stop_header_timer()
        if self._counted:
            self._connections.open -= 1
            self._counted = False
        super().connection_lost(exc)

    def _await_header(self) -> None:
        self._stop_header_timer()
        self._header_timer = self.loop.call_later(self._header_timeout, self._header_expired)
        self._connections.idle[self] = None

    def _stop_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        self._connections.idle.pop(self, None)

    def _header_expired(self) -> None:
        self._header_timer = None
        self._connections.idle.pop(self, None)
        if self.cycle is None or self.cycle.response_complete:   # no request being served
            self.transport.close()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._chunks = self._chunk_bytes = 0

    def on_headers_complete(self) -> None:
        self._stop_header_timer()
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        self._chunks += 1
        self._chunk_bytes += len(body)
        if self._chunks > TINY_CHUNKS and self._chunk_bytes < self._chunks * MIN_AVERAGE_CHUNK:
            self._chunks = -(1 << 62)        # refuse once
            self.send_400_response(f"the body came in chunks of under {MIN_AVERAGE_CHUNK} bytes "
                                   "on average; send it whole or in larger chunks")
            if self.cycle is not None:
                self.cycle.disconnected = True
                self.cycle.message_event.set()
            return
        # uvicorn's on_body with a higher mark: it pauses reading past 64 KiB not yet taken by
        # the app, so a 5 s WAV (160 KiB) paused and resumed the socket twice, two epoll_ctl
        # calls each; the app takes the body as it comes, counted against --max-buffered.
        cycle = self.cycle
        if cycle is None or cycle.response_complete or (self.parser.should_upgrade() and self._should_upgrade()):
            return
        cycle.body += body
        if len(cycle.body) > BODY_HIGH_WATER:
            self.flow.pause_reading()
        cycle.message_event.set()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and not self.pipeline:
            self._await_header()


class AcceptErrorsOnce(logging.Filter):
    """asyncio logs a traceback for every failed accept() (EMFILE: out of descriptors); one
    line per interval says the same."""

    def __init__(self, interval: float = ACCEPT_LOG_INTERVAL) -> None:
        super().__init__()
        self.interval = interval
        self._last = -interval
        self.suppressed = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if "socket.accept() out of system resource" not in str(record.msg):
            return True
        now = time.monotonic()
        if now - self._last < self.interval:
            self.suppressed += 1
            return False
        self._last = now
        record.msg = (f"socket.accept() out of system resource (open files): new connections "
                      f"wait; {self.suppressed} more such errors in the last interval not logged")
        record.args, record.exc_info, record.exc_text = (), None, None
        self.suppressed = 0
        return True


_ACCEPT_FILTER = AcceptErrorsOnce()


def make_server(app: Any, host: str = "127.0.0.1", port: int = 9090) -> uvicorn.Server:
    """A uvicorn server for ``app`` (without access log: the app logs each request itself)."""
    options: ServerOptions = app.state.options
    _warn_if_open(host, port, options.token is not None)
    listen_on(app, host)
    return uvicorn.Server(uvicorn.Config(app, host=host, port=port, **uvicorn_options(options)))


def listen_on(app: Any, host: str) -> None:
    """Tell ``app`` where it listens (the Host check applies on loopback); in this process,
    asyncio's accept() errors are logged once per interval."""
    app.state.front.listen_on(_is_loopback(host))
    logging.getLogger("asyncio").addFilter(_ACCEPT_FILTER)


def uvicorn_options(options: ServerOptions) -> Dict[str, Any]:
    """uvicorn's settings for ``options``: the guarded protocol, proxy headers, no access log."""
    protocol = functools.partial(GuardedProtocol, header_timeout=options.header_timeout,
                                 connections=Connections(connection_cap(options.max_connections)))
    return {**UVICORN_OPTIONS, **_proxy_options(options), "http": protocol}


def _proxy_options(options: ServerOptions) -> Dict[str, Any]:
    # uvicorn believes X-Forwarded-For from 127.0.0.1 by default, where every local client is.
    if not options.forwarded_allow_ips:
        return {"proxy_headers": False}
    return {"proxy_headers": True, "forwarded_allow_ips": list(options.forwarded_allow_ips)}


def connection_cap(wanted: int) -> int:
    """``wanted``, lowered to FILE_SHARE of the open-file limit."""
    try:
        import resource
    except ImportError:                         # not on Windows
        return wanted
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(16, min(wanted, int(soft * FILE_SHARE)))


def run(app: Any, host: str = "127.0.0.1", port: int = 9090) -> None:
    """Serve ``app`` until SIGINT or SIGTERM (each lets the requests in flight finish)."""
    raise_file_limit()
    ignore_sighup()
    make_server(app, host, port).run()


def run_processes(factory: str, processes: int, host: str, port: int, options: ServerOptions) -> None:
    """Serve on one port from ``processes`` uvicorn worker processes until interrupted; each
    builds its own app by calling ``factory`` ("module:function"; it calls ``listen_on``), and
    gets its own copy of the guard. uvicorn's supervisor restarts a worker that dies, and on
    SIGHUP replaces the workers one by one, each old one finishing its requests."""
    _warn_if_open(host, port, options.token is not None)
    raise_file_limit()
    uvicorn.run(factory, factory=True, workers=processes, host=host, port=port,
                **uvicorn_options(options))


def ignore_sighup() -> None:
    """SIGHUP (a closing SSH session, a terminal hanging up) would kill the process and every
    request in it at once: it is logged and ignored. Stop the server with SIGTERM or Ctrl+C."""
    if not hasattr(signal, "SIGHUP"):
        return

    def logged(_signum: int, _frame: Any) -> None:
        LOG.warning("SIGHUP ignored: the server keeps serving (stop it with SIGTERM or Ctrl+C)")

    try:
        signal.signal(signal.SIGHUP, logged)
    except ValueError:                          # not the main thread (an embedding program)
        pass


def _warn_if_open(host: str, port: int, token_required: bool) -> None:
    if not _is_loopback(host) and not token_required:
        LOG.warning("listening on %s without a token: anyone who can reach port %d can spend "
                    "your Google quota; set GOOGLE_STT_SERVER_TOKEN or --token-file", host, port)


def raise_file_limit() -> None:
    """Hundreds of requests in flight hold two sockets each (client and Google): lift the soft
    limit on open files (1024 on many systems) towards the hard one."""
    try:
        import resource
    except ImportError:                         # not on Windows
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 65536 if hard == resource.RLIM_INFINITY else min(hard, 65536)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        except (ValueError, OSError) as exc:
            LOG.warning("could not raise the open-file limit from %d: %s", soft, exc)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
