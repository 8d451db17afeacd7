"""What the server lets in, and when: a slot only for a whole request, a cap on the bytes of
bodies held at once, and deadlines for a body to arrive. No app, no routes."""
from __future__ import annotations

import asyncio
import threading
import time
from typing import Any, Dict, Optional

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
    take more memory than ``limit`` (each body is also under max_body); and of those still
    arriving, by client address, so that one client's stalled uploads can hold at most
    ``per_client`` of it and never lock the others out."""

    def __init__(self, limit: int, per_client: Optional[int] = None) -> None:
        self.limit = limit
        self.per_client = per_client or limit
        self.held = 0
        self._arriving: Dict[str, int] = {}
        self._lock = threading.Lock()

    def take(self, size: int, client: str) -> Optional[str]:
        """Count ``size`` more bytes of a body still arriving from ``client``; if it would pass
        a limit, count nothing and say why."""
        with self._lock:
            if self.held + size > self.limit:
                return "the server holds too many uploads; try again shortly"
            arriving = self._arriving.get(client, 0) + size
            if arriving > self.per_client:
                return (f"uploads from {client} still arriving already hold {self.per_client} "
                        "bytes, the most one client may; try again shortly")
            self.held += size
            self._arriving[client] = arriving
            return None

    def arrived(self, size: int, client: str) -> None:
        """A body of ``size`` bytes from ``client`` is complete (still held, no longer arriving)."""
        with self._lock:
            self._arrived(size, client)

    def give(self, size: int, client: str, arriving: bool) -> None:
        with self._lock:
            self.held -= size
            if arriving:
                self._arrived(size, client)

    def _arrived(self, size: int, client: str) -> None:
        left = self._arriving.get(client, 0) - size
        if left > 0:
            self._arriving[client] = left
        else:
            self._arriving.pop(client, None)


class Body:
    """``receive`` for one request body, refusing with 413 past ``max_body`` bytes, 408 (and
    Connection: close) when no byte comes for ``idle`` seconds or the whole body takes over
    ``total``, 503 when the server already holds ``buffer.limit`` bytes of bodies."""

    def __init__(self, receive: Receive, max_body: int, idle: float, total: float,
                 buffer: Buffer, client: str) -> None:
        self._receive, self._max_body, self._idle, self._total = receive, max_body, idle, total
        self._buffer, self._client = buffer, client
        self._deadline: Optional[float] = None
        self.size = 0
        self.complete = False

    async def receive(self) -> Message:
        if self.complete:                          # after the body: disconnects, no deadline
            return await self._receive()
        now = time.monotonic()
        if self._deadline is None:
            self._deadline = now + self._total
        wait = min(self._idle, self._deadline - now)
        try:
            message = await asyncio.wait_for(self._receive(), max(0.0, wait))
        except asyncio.TimeoutError:
            why = (f"no byte of the body for {self._idle:g} s" if wait >= self._idle
                   else f"the body took over {self._total:g} s")
            raise Refusal(408, f"request timeout: {why}; send the whole body at once",
                          {"Connection": "close"}) from None
        if message["type"] == "http.request":
            chunk = len(message.get("body", b""))
            if self.size + chunk > self._max_body:
                raise too_large(self._max_body)
            refused = self._buffer.take(chunk, self._client)
            if refused:
                raise Refusal(503, refused, {"Retry-After": "1", "Connection": "close"})
            self.size += chunk
            self.complete = not message.get("more_body", False)
            if self.complete:
                self._buffer.arrived(self.size, self._client)
        return message

    def release(self) -> None:
        self._buffer.give(self.size, self._client, arriving=not self.complete)
        self.size = 0
