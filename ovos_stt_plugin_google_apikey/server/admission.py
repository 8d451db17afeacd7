"""What the server lets in, and when: a slot only for a whole request, a cap on the bytes of
bodies held at once, and deadlines and a minimum rate for a body to arrive. No app, no routes.

Fairness does not go by client address: every local client shares 127.0.0.1, and an address
can be forged behind a proxy. It goes by progress: when the bytes held reach the cap, the uploads
that have sent nothing since the one needing room began are refused (503) and let go, the
longest-silent first, so a stalled or trickling upload cannot hold memory that a client sending
now needs; with the minimum rate, holding memory costs an attacker bandwidth, not patience.
"""
from __future__ import annotations

import asyncio
import threading
import time
from typing import Any, Dict, List, Optional

from starlette.types import Message, Receive

from .uploads import Refusal, too_large


class Gate:
    """Admits at most ``capacity`` whole requests at once; the rest are refused, never queued."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.busy = 0
        self._lock = threading.Lock()      # released from worker threads too (done-callbacks)

    def enter(self) -> bool:
        with self._lock:
            if self.busy >= self.capacity:
                return False
            self.busy += 1
            return True

    def leave(self, _: Any = None) -> None:
        with self._lock:
            self.busy -= 1


class Buffer:
    """Counts the bytes of request bodies the server holds, so that many uploads at once cannot
    take more memory than ``limit`` (each body is also under max_body)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0
        self._arriving: Dict[int, "Body"] = {}
        self._lock = threading.Lock()      # given back from worker threads too

    def take(self, body: "Body", size: int) -> Optional[str]:
        """Count ``size`` more bytes of ``body`` (still arriving); make room from slower
        uploads if need be; if there is still none, count nothing and say why."""
        with self._lock:
            if self.held + size > self.limit:
                for victim in self._silent_since(body):
                    self._drop(victim)
                    if self.held + size <= self.limit:
                        break
            if self.held + size > self.limit:
                return "the server holds too many uploads; try again shortly"
            self.held += size
            self._arriving[id(body)] = body
            return None

    def _silent_since(self, body: "Body") -> List["Body"]:
        """Arriving uploads with no byte since ``body`` began, the longest-silent first."""
        silent = [b for b in self._arriving.values() if b is not body and b.last_byte < body.started]
        return sorted(silent, key=lambda b: b.last_byte)

    def _drop(self, victim: "Body") -> None:
        self.held -= victim.size
        del self._arriving[id(victim)]
        victim.evict()

    def arrived(self, body: "Body") -> None:
        """``body`` is complete (still held, no longer arriving: it cannot be evicted)."""
        with self._lock:
            self._arriving.pop(id(body), None)

    def give(self, body: "Body") -> None:
        with self._lock:
            if not body.evicted:            # an evicted body's bytes were given back already
                self.held -= body.size
            self._arriving.pop(id(body), None)


class Body:
    """``receive`` for one request body, refusing with 413 past ``max_body`` bytes; 408 (and
    Connection: close) when no byte comes for ``idle`` seconds, when after its first ``idle``
    seconds any ``idle`` seconds bring fewer than ``min_rate`` bytes a second, or when the whole
    body takes over ``total``; 503 when the buffer has no room, or made room by dropping it."""

    def __init__(self, receive: Receive, max_body: int, idle: float, total: float,
                 min_rate: int, buffer: Buffer) -> None:
        self._receive, self._max_body, self._idle, self._total = receive, max_body, idle, total
        self._min_rate, self._buffer = min_rate, buffer
        self.started = 0.0
        self.last_byte = 0.0
        self._deadline = 0.0
        self._window_end = 0.0            # when the current window's bytes are judged
        self._window_start_size = 0
        self._timeout: Optional[Any] = None   # the running asyncio.timeout, to wake on eviction
        self.size = 0
        self.complete = False
        self.evicted = False

    def evict(self) -> None:
        """Called by the buffer: refuse this body now (it wakes if it is waiting for bytes)."""
        self.evicted = True
        if self._timeout is not None:
            self._timeout.reschedule(asyncio.get_running_loop().time())

    async def receive(self) -> Message:
        if self.complete:                          # after the body: disconnects, no deadline
            return await self._receive()
        now = time.monotonic()
        if not self.started:
            self.started, self._deadline = now, now + self._total
            self._window_end = now + 2 * self._idle     # the first window has a grace period
        self._check(now)
        wait = max(0.0, min(self._idle, self._deadline - now))
        try:
            message = await self._wait(wait)
        except asyncio.TimeoutError:
            self._check(time.monotonic())
            why = (f"no byte of the body for {self._idle:g} s" if wait >= self._idle
                   else f"the body took over {self._total:g} s")
            raise _timeout(why) from None
        if message["type"] == "http.request":
            self._count(message)
        return message

    async def _wait(self, seconds: float) -> Message:
        if not hasattr(asyncio, "timeout"):          # Python < 3.11: no wake on eviction
            return await asyncio.wait_for(self._receive(), seconds)
        async with asyncio.timeout(seconds) as self._timeout:
            try:
                return await self._receive()
            finally:
                self._timeout = None

    def _check(self, now: float) -> None:
        if self.evicted:
            raise Refusal(503, "the server needed the room this slow upload held; send the whole "
                               "body at once and try again", {"Retry-After": "1", "Connection": "close"})
        if now >= self._window_end:
            brought = self.size - self._window_start_size
            if brought < self._min_rate * self._idle:
                raise _timeout(f"the body arrived at under {self._min_rate} bytes a second")
            self._window_end, self._window_start_size = now + self._idle, self.size

    def _count(self, message: Message) -> None:
        if self.evicted:
            self._check(time.monotonic())
        chunk = len(message.get("body", b""))
        if self.size + chunk > self._max_body:
            raise too_large(self._max_body)
        refused = self._buffer.take(self, chunk)
        if refused:
            raise Refusal(503, refused, {"Retry-After": "1", "Connection": "close"})
        self.size += chunk
        self.last_byte = time.monotonic()
        self.complete = not message.get("more_body", False)
        if self.complete:
            self._buffer.arrived(self)

    def release(self) -> None:
        self._buffer.give(self)
        self.size = 0


def _timeout(why: str) -> Refusal:
    return Refusal(408, f"request timeout: {why}; send the whole body at once", {"Connection": "close"})
