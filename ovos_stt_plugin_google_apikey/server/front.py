"""What every request meets first, before its body is read: the Host check (DNS rebinding),
the Origin check (a web page in the user's browser), and the STT routes' dispatch to the
pipeline. Everything else goes on to FastAPI's router."""
from __future__ import annotations

from typing import Any, Iterable, Optional

from starlette.types import ASGIApp, Receive, Scope, Send

from .options import LOOPBACK_HOSTS, ServerOptions
from .uploads import printable

STT_PATHS = ("/stt", "/stt/json", "/lang_detect")
MAX_SHOWN = 80


class Front:
    """ASGI: refuse a foreign Host (when listening on loopback) or Origin with 403, serve POSTs
    to the STT routes through ``pipeline``, pass the rest to ``fallback``."""

    def __init__(self, fallback: ASGIApp, pipeline: Any, options: ServerOptions) -> None:
        self.fallback = fallback
        self.pipeline = pipeline
        self.origins = frozenset(o.rstrip("/").lower() for o in options.allow_origin)
        self.any_origin = "*" in self.origins
        self.extra_hosts = frozenset(h.lower() for h in options.allow_host)
        # Set by serving.make_server: the Host check applies to a server listening on loopback
        # (an in-process test client calls the app with Host: testserver).
        self.hosts: Optional[frozenset] = None

    def listen_on(self, loopback: bool) -> None:
        self.hosts = frozenset(LOOPBACK_HOSTS) | self.extra_hosts if loopback else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.fallback(scope, receive, send)
            return
        host, origin = _headers(scope["headers"])
        why = self._foreign(host, origin)
        if why is not None:
            await _forbidden(send, why)
        elif scope["method"] == "POST" and scope["path"] in STT_PATHS:
            await self.pipeline(scope, receive, send)
        else:
            await self.fallback(scope, receive, send)

    def _foreign(self, host: bytes, origin: Optional[bytes]) -> Optional[str]:
        name = host.decode("latin-1").lower()
        if self.hosts is not None and "*" not in self.hosts and _hostname(name) not in self.hosts:
            return (f"Host {printable(name, MAX_SHOWN)!r} is not this server's name; run the server "
                    "with --allow-host NAME to answer it")
        if origin is None or self.any_origin:
            return None
        seen = origin.decode("latin-1").rstrip("/").lower()
        if seen in self.origins or _origin_host(seen) == name:      # same origin: /docs
            return None
        return (f"Origin {printable(seen, MAX_SHOWN)!r} is not this server's: a web page may call "
                "it only if the server runs with --allow-origin ORIGIN")


def _headers(headers: Iterable[Any]) -> Any:
    host, origin = b"", None
    for name, value in headers:
        if name == b"host":
            host = value
        elif name == b"origin":
            origin = value
    return host, origin


def _hostname(host: str) -> str:
    """The name in a Host header, without its port: localhost:9090 -> localhost, [::1]:80 -> [::1]."""
    if host.startswith("["):
        return host[:host.find("]") + 1]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _origin_host(origin: str) -> Optional[str]:
    """host[:port] of an origin such as http://127.0.0.1:9090 (None for "null" and the like)."""
    scheme, sep, rest = origin.partition("://")
    return rest if sep and scheme in ("http", "https") else None


async def _forbidden(send: Send, why: str) -> None:
    body = (why + "\n").encode("utf-8")
    # Connection: close: a refused request's body is not read.
    await send({"type": "http.response.start", "status": 403, "headers": [
        (b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode()),
        (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
