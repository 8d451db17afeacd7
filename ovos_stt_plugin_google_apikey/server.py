"""The companion HTTP server: ovos-stt-http-server's routes in front of a GoogleAPIKeySTT."""
from __future__ import annotations

import asyncio
import hmac
import ipaddress
import time
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Awaitable, Callable, Dict, Optional

import uvicorn
from fastapi import FastAPI, Request, Security
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.security import HTTPBearer

from . import contract
from .admission import Body, Buffer, Gate
from .docs_assets import app_with_offline_docs
from .languages import to_google
from .log import ModuleLog
from .metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from .metrics import Metrics, RequestMetrics
from .uploads import (DEFAULT_MAX_AUDIO_SECONDS, LANG_TAG, Refusal, parse_lang, read_audio,
                      read_json_audio, refusal_for, too_large)
from .version import __version__

LOG = ModuleLog(__name__)

PLUGIN_ID = "ovos-stt-plugin-google-apikey"   # plugin.PLUGIN_ID, without importing OPM here
NO_KEY = "no Google API key configured: set GOOGLE_STT_API_KEY"
# The defaults below are what README documents ("The companion HTTP server").
DEFAULT_MAX_BODY = 10 * 1024 * 1024
# Google calls in flight at once. A worker is a thread that mostly waits on Google (~1 s), so
# hundreds cost little: bench/capacity.py measures the memory per request in flight.
DEFAULT_WORKERS = 256
DEFAULT_QUEUE = 64                           # whole requests waiting beyond those; then 503
DEFAULT_BODY_IDLE = 5.0                      # seconds a body may go without a byte: then 408
DEFAULT_BODY_TIMEOUT = 60.0                  # seconds a whole body may take: then 408
DEFAULT_MAX_BUFFERED = 64 * 1024 * 1024      # bytes of bodies held at once, read or reading


class _Job:
    """One request: its limited Request, what it carried, its engine call."""

    def __init__(self, request: Request, executor: ThreadPoolExecutor, body: Body,
                 metrics: Metrics) -> None:
        self.request = Request(request.scope, body.receive)
        self.body = body
        self.admitted = False
        self._metrics = metrics
        self.seconds: Optional[float] = None
        self.lang: Optional[str] = None
        self._executor = executor
        self._future: Optional[Future] = None

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run a blocking engine call on the pool and await it."""
        self._future = self._metrics.submit(self._executor, self.request.state, fn, *args)
        return await asyncio.wrap_future(self._future)

    def release(self, gate: Gate) -> None:
        # The slot and the body's bytes are held until the engine thread ends, even if the
        # client went away first, so the pool's queue can never grow past workers + queue.
        def done(_: Any = None) -> None:
            if self.admitted:
                gate.leave()
            self.body.release()

        if self._future is None:
            done()
        else:
            self._future.add_done_callback(done)


def create_app(engine: Any, *, token: Optional[str] = None, max_body: int = DEFAULT_MAX_BODY,
               workers: int = DEFAULT_WORKERS, queue: int = DEFAULT_QUEUE,
               default_lang: Optional[str] = None, body_idle: float = DEFAULT_BODY_IDLE,
               body_timeout: float = DEFAULT_BODY_TIMEOUT,
               max_buffered: int = DEFAULT_MAX_BUFFERED,
               max_audio_seconds: float = DEFAULT_MAX_AUDIO_SECONDS) -> FastAPI:
    """The ASGI app. ``engine`` is a GoogleAPIKeySTT, or None when no key is configured (the
    STT routes then answer 503). ``max_audio_seconds`` bounds the audio of one request (413
    past it). Raises ValueError for a bad limit or default_lang.

    A request takes one of ``workers + queue`` slots only once its whole body has arrived;
    ``workers`` of them call Google at once, the rest wait their turn; past that, 503.
    """
    if max_body < 1 or workers < 1 or queue < 0 or max_buffered < max_body:
        raise ValueError("max_body and workers must be at least 1, queue at least 0, "
                         "max_buffered at least max_body")
    if not body_idle > 0 or not body_timeout > 0:
        raise ValueError("body_idle and body_timeout must be over 0 seconds")
    if not max_audio_seconds > 0:
        raise ValueError(f"max_audio_seconds must be above 0; got {max_audio_seconds}")
    if default_lang is not None and not LANG_TAG.fullmatch(default_lang):
        raise ValueError(f"default_lang must be a language tag such as en-US; got {default_lang!r}")
    executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="google-stt")
    _reserve_connections(engine, workers)
    gate = Gate(workers + queue)
    # One client address may have a quarter of it arriving (at least one whole body).
    buffer = Buffer(max_buffered, per_client=max(max_body, max_buffered // 4))
    expected = f"Bearer {token}".encode("utf-8") if token else None

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        executor.shutdown(wait=False, cancel_futures=True)

    # /docs and /openapi.json are open even with a token (the contract is public, and a
    # browser loads them without one); with a token the schema declares the bearer scheme, so
    # /docs' "Authorize" sends it.
    app = app_with_offline_docs(
        title=PLUGIN_ID, version=__version__, lifespan=lifespan,
        description="Google Cloud Speech-to-Text behind the ovos-stt-http-server routes.")
    app.state.token_required = expected is not None
    metrics = Metrics()
    metrics.watch(engine)
    app.add_middleware(RequestMetrics, metrics=metrics)
    bearer = [Security(HTTPBearer(auto_error=False))] if expected is not None else []

    async def answer(request: Request, work: Callable[[_Job], Awaitable[Response]],
                     json_errors: bool) -> Response:
        started, job = time.monotonic(), None
        try:
            # Everything that can refuse without the body does so before reading a byte.
            presented = request.headers.get("authorization", "").encode("utf-8", "replace")
            if expected is not None and not hmac.compare_digest(presented, expected):
                # Connection: close, so an unauthenticated upload is not read on our dime.
                raise Refusal(401, "missing or wrong 'Authorization: Bearer <token>' header",
                              {"WWW-Authenticate": "Bearer", "Connection": "close"})
            if engine is None:
                raise Refusal(503, NO_KEY)
            length = request.headers.get("content-length", "")
            if length.isascii() and length.isdigit() and int(length) > max_body:
                raise too_large(max_body)
            client = request.client.host if request.client else "unknown"
            body = Body(request.receive, max_body, body_idle, body_timeout, buffer, client)
            job = _Job(request, executor, body, metrics)
            await job.request.body()        # a slot only for a whole body: a stalled upload holds none
            job.admitted = gate.enter()
            if not job.admitted:
                raise Refusal(503, "the server is busy; try again shortly", {"Retry-After": "1"})
            response = await work(job)
        except Exception as exc:                   # noqa: BLE001 - every outcome is mapped here
            refusal = refusal_for(exc)
            if refusal is None:
                LOG.exception("internal error on %s %s", request.method, request.url.path)
                refusal = Refusal(500, "internal error")
            response = _error_response(refusal, json_errors)
            _log(request, job, refusal.status, started, refusal.message)
        else:
            _log(request, job, response.status_code, started, "")
        finally:
            if job is not None:
                job.release(gate)
                metrics.audio.inc(job.seconds or 0.0)
        return response

    async def stt_route(job: _Job) -> Response:
        pcm, lang = await read_audio(job.request, default_lang, max_audio_seconds)
        job.seconds, job.lang = pcm.duration, engine.google_language(lang)
        transcript = await job.run(engine.recognize, pcm, lang)
        return PlainTextResponse(transcript.text)    # "" is "no speech", as OVOS expects

    async def stt_json_route(job: _Job) -> Response:
        pcm, lang = await read_json_audio(job.request, default_lang, max_audio_seconds)
        job.seconds, job.lang = pcm.duration, engine.google_language(lang)
        transcript = await job.run(engine.recognize, pcm, lang)
        if transcript.language:                 # what Google heard (it matters for "auto")
            job.lang = to_google(transcript.language)
        return JSONResponse({"text": transcript.text, "lang": job.lang})

    async def lang_detect_route(job: _Job) -> Response:
        given = ",".join(job.request.query_params.getlist("valid_langs"))   # repeated or listed
        valid = [v for v in (parse_lang(v.strip()) for v in given.split(",")) if v]
        if not valid:
            raise Refusal(400, "valid_langs is required, e.g. ?valid_langs=en-US,pt-PT")
        if "auto" in valid:
            raise Refusal(400, "valid_langs names the languages to choose from, e.g. en-US,pt-PT; "
                               "'auto' is not one")
        pcm, _ = await read_audio(job.request, default_lang, max_audio_seconds)
        job.seconds = pcm.duration
        if len(valid) == 1:              # nothing to choose from (as the launcher does), audio read
            job.lang = valid[0]
            return JSONResponse({"lang": valid[0], "conf": 1.0})
        lang, conf = await job.run(engine.detect_language, pcm, valid)
        job.lang = lang
        return JSONResponse({"lang": lang, "conf": conf})

    @app.post("/stt", response_class=PlainTextResponse, dependencies=bearer, **contract.STT)
    async def stt(request: Request) -> Response:
        return await answer(request, stt_route, json_errors=False)

    @app.post("/stt/json", dependencies=bearer, **contract.STT_JSON)
    async def stt_json(request: Request) -> Response:
        return await answer(request, stt_json_route, json_errors=True)

    @app.post("/lang_detect", dependencies=bearer, **contract.LANG_DETECT)
    async def lang_detect(request: Request) -> Response:
        return await answer(request, lang_detect_route, json_errors=True)

    @app.get("/status", **contract.STATUS)
    async def status() -> Dict[str, Any]:
        return {"status": "ok", "plugin": PLUGIN_ID, "lang_plugin": None, "gradio": False,
                "key_configured": engine is not None, "version": __version__,
                "busy": gate.busy, "capacity": gate.capacity, "totals": metrics.totals()}

    @app.get("/metrics", response_class=PlainTextResponse, dependencies=bearer, **contract.METRICS)
    async def metrics_route(request: Request) -> Response:
        presented = request.headers.get("authorization", "").encode("utf-8", "replace")
        if expected is not None and not hmac.compare_digest(presented, expected):
            return PlainTextResponse("missing or wrong 'Authorization: Bearer <token>' header\n",
                                     401, {"WWW-Authenticate": "Bearer"})
        return Response(metrics.exposition(), media_type=METRICS_CONTENT_TYPE)

    @app.get("/", response_class=PlainTextResponse, include_in_schema=False)
    async def root() -> str:
        return "ok"

    return app


def _reserve_connections(engine: Any, workers: int) -> None:
    """One connection to Google per worker: the engine's pool blocks when full (16 by default),
    so --workers 32 would otherwise run only 16 requests at once, the rest waiting unseen."""
    client = getattr(getattr(engine, "recognizer", None), "client", None)
    if client is not None and hasattr(client, "ensure_pool_size"):
        client.ensure_pool_size(workers)


def make_server(app: FastAPI, host: str = "127.0.0.1", port: int = 9090) -> uvicorn.Server:
    """A uvicorn server for ``app`` (without access log: the app logs each request itself)."""
    _warn_if_open(host, port, getattr(app.state, "token_required", False))
    return uvicorn.Server(uvicorn.Config(app, host=host, port=port, **UVICORN_OPTIONS))


def run(app: FastAPI, host: str = "127.0.0.1", port: int = 9090) -> None:
    """Serve ``app`` until interrupted."""
    _raise_file_limit()
    make_server(app, host, port).run()


def run_processes(factory: str, processes: int, host: str, port: int, token_required: bool) -> None:
    """Serve on one port from ``processes`` uvicorn worker processes until interrupted; each
    builds its own app by calling ``factory`` ("module:function"). uvicorn's supervisor
    (0.30 and later) restarts a worker that dies."""
    _warn_if_open(host, port, token_required)
    _raise_file_limit()
    uvicorn.run(factory, factory=True, workers=processes, host=host, port=port, **UVICORN_OPTIONS)


UVICORN_OPTIONS: Dict[str, Any] = dict(access_log=False, log_config=None, server_header=False)


def _warn_if_open(host: str, port: int, token_required: bool) -> None:
    if not _is_loopback(host) and not token_required:
        LOG.warning("listening on %s without a token: anyone who can reach port %d can spend "
                    "your Google quota; set GOOGLE_STT_SERVER_TOKEN or --token-file", host, port)


def _raise_file_limit() -> None:
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


def _error_response(refusal: Refusal, json_errors: bool) -> Response:
    if json_errors:
        return JSONResponse({"error": refusal.message}, refusal.status, refusal.headers)
    return PlainTextResponse(refusal.message + "\n", refusal.status, refusal.headers)


def _log(request: Request, job: Optional[_Job], status: int, started: float, why: str) -> None:
    seconds = f"{job.seconds:.2f}s" if job is not None and job.seconds is not None else "-"
    lang = job.lang if job is not None and job.lang else "-"
    LOG.info("%s %s audio=%s lang=%s status=%d %dms%s", request.method, request.url.path, seconds,
             lang, status, (time.monotonic() - started) * 1000, f" ({why})" if why else "")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
