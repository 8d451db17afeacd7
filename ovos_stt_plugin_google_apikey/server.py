"""The companion HTTP server: the ovos-stt-http-server routes in front of an engine."""
from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import logging
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Awaitable, Callable, Dict, List, Optional, Tuple

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.types import Message, Receive

from . import audio as audio_mod
from . import errors
from .settings import LOOPBACK_HOSTS
from .version import __version__

LOG = logging.getLogger(__name__)

PLUGIN_ID = "ovos-stt-plugin-google-apikey"   # plugin.py's, without importing OPM here
NO_KEY = "no Google API key configured: set GOOGLE_STT_API_KEY"
DEFAULT_MAX_BODY = 10 * 1024 * 1024
# A BCP-47-ish tag (en-US, cmn-Hans-CN, pt_BR) or "auto"; anything else is refused with 400.
LANG_PATTERN = re.compile(r"auto|[A-Za-z]{2,3}([-_][A-Za-z0-9]{1,8}){0,4}")
MAX_LANG_CHARS = 35
MULTIPART = "multipart/form-data"

Work = Callable[[Request, Dict[str, Any]], Awaitable[Response]]


class Refusal(Exception):
    """An answer other than 200: the status, one line saying why, and extra headers."""

    def __init__(self, status: int, message: str, headers: Optional[Dict[str, str]] = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = " ".join(message.split())          # one line, whatever Google said
        self.headers = headers or {}


class _Gate:
    """Admits at most ``capacity`` requests at once; the rest are refused, never queued."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.busy = 0
        self._lock = threading.Lock()    # left from worker threads (future done-callbacks)

    def enter(self) -> bool:
        with self._lock:
            if self.busy >= self.capacity:
                return False
            self.busy += 1
            return True

    def leave(self, *_: Any) -> None:
        with self._lock:
            self.busy -= 1


def create_app(engine: Any, *, token: Optional[str] = None, max_body: int = DEFAULT_MAX_BODY,
               workers: int = 8, queue: int = 16, default_lang: Optional[str] = None) -> FastAPI:
    """The ASGI app. ``engine`` is a built GoogleAPIKeySTT, or None when no key is configured
    (the STT routes then answer 503). Raises ValueError for a non-positive limit."""
    if max_body < 1 or workers < 1 or queue < 0:
        raise ValueError("max_body and workers must be positive, queue not negative")
    executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="google-stt")
    gate = _Gate(workers + queue)
    expected = f"Bearer {token}".encode("utf-8") if token else None

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        executor.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title=PLUGIN_ID, version=__version__, lifespan=lifespan,
                  docs_url=None, redoc_url=None, openapi_url=None)
    app.state.token_required = expected is not None

    async def call(fn: Callable[..., Any], *args: Any) -> Any:
        """Run a blocking engine call on the pool; the request keeps its slot until it ends."""
        future = executor.submit(fn, *args)
        gate.leave_on = future.add_done_callback(gate.leave)   # slot freed with the thread
        return await asyncio.wrap_future(future)

    async def answer(request: Request, json_errors: bool, work: Work) -> Response:
        started, info = time.monotonic(), {"seconds": None, "lang": None}
        status, why, admitted, handed_off = 500, "", False, False
        try:
            presented = request.headers.get("authorization", "").encode("utf-8", "replace")
            if expected is not None and not hmac.compare_digest(presented, expected):
                raise Refusal(401, "missing or wrong 'Authorization: Bearer <token>' header",
                              {"WWW-Authenticate": "Bearer"})
            if engine is None:
                raise Refusal(503, NO_KEY)
            if not gate.enter():
                raise Refusal(503, "the server is busy; try again", {"Retry-After": "1"})
            admitted = True
            length = request.headers.get("content-length", "")
            if length.isdigit() and int(length) > max_body:
                raise Refusal(413, f"the body is {length} bytes; this server takes at most {max_body}")
            limited = Request(request.scope, _limit(request.receive, max_body))
            info["call"] = lambda fn, *args: call(fn, *args)
            handed_off = True                           # from here `call` owns the slot
            response = await work(limited, info)
            status = response.status_code
            return response
        except Refusal as refusal:
            status, why = refusal.status, refusal.message
        except _TooLarge:
            status, why = 413, f"the body is over {max_body} bytes, the most this server takes"
        except Exception as exc:                                # noqa: BLE001 - mapped below
            refusal = _refusal_for(exc)
            if refusal is None:
                LOG.exception("internal error on %s", request.url.path)
                status, why = 500, "internal error"
            else:
                status, why = refusal.status, refusal.message
                headers = refusal.headers
        finally:
            if admitted and not info.get("submitted") and handed_off is False:
                gate.leave()
            _log(request, info, status, why, started)
        headers = locals().get("headers") or {}
        return _error(status, why, headers, json_errors)

    return app
