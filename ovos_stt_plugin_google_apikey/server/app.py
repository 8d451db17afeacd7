"""The companion HTTP server's app: ovos-stt-http-server's routes in front of a GoogleAPIKeySTT.

The STT routes (POST /stt, /stt/json, /lang_detect) are served by ``Pipeline``, a plain ASGI
handler that ``Front`` calls directly: no FastAPI dependency solving or router per request. They
are declared on the FastAPI app too, for /openapi.json and /docs, which stay complete.
"""
from __future__ import annotations

import asyncio
import gc
import hmac
import time
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Awaitable, Callable, Dict, Optional, Tuple

from fastapi import FastAPI, Request, Security
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.security import HTTPBearer
from fastapi_offline import FastAPIOffline
from starlette.types import Receive, Scope, Send

from ..languages import to_google, to_standard
from ..log import ModuleLog
from ..settings import PLUGIN_ID
from ..version import __version__
from . import contract
from .admission import Body, Buffer, Gate
from .front import Front
from .metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from .metrics import Metrics, RequestMetrics
from .options import ServerOptions
from .uploads import (
    Refusal,
    printable,
    read_audio,
    read_json_audio,
    refusal_for,
    too_large,
)

LOG = ModuleLog(__package__ or "ovos_stt_plugin_google_apikey.server")   # the subpackage

NO_KEY = "no Google API key configured: set GOOGLE_STT_API_KEY"
UNAUTHORIZED = "missing or wrong 'Authorization: Bearer <token>' header"
MAX_LOGGED_PATH = 100
DOCS_ASSETS = "/docs-assets"          # where Swagger UI and ReDoc load their scripts from


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
        self.query: Dict[str, Any] = {}
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


Route = Callable[[_Job], Awaitable[Response]]


class Pipeline:
    """The path of an STT request: refuse what can be refused before the body (token, key,
    Content-Length, query), read the body under its limits, take a slot for the whole request,
    run the engine call on a worker, answer, log one line."""

    def __init__(self, engine: Any, options: ServerOptions, metrics: Metrics) -> None:
        self.engine, self.options, self.metrics = engine, options, metrics
        self.executor = ThreadPoolExecutor(max_workers=options.workers, thread_name_prefix="google-stt")
        self.gate = Gate(options.workers + options.queue)
        self.buffer = Buffer(options.max_buffered)
        self.token = options.token.encode("ascii") if options.token else None
        self.routes: Dict[str, Tuple[Route, bool, list]] = {
            "/stt": (self.stt, False, contract.AUDIO_QUERY),
            "/stt/json": (self.stt_json, True, []),
            "/lang_detect": (self.lang_detect, True, contract.DETECT_QUERY)}

    def authorized(self, header: bytes) -> bool:
        """Authorization: Bearer <token> (the scheme in any case, RFC 9110 §11.1)."""
        if self.token is None:
            return True
        scheme, _, credentials = header.strip().partition(b" ")
        return scheme.lower() == b"bearer" and hmac.compare_digest(credentials.strip(), self.token)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route, json_errors, params = self.routes[scope["path"]]
        request, started = Request(scope, receive), time.monotonic()
        response, job, why = await self.answer(request, route, json_errors, params)
        try:
            await response(scope, receive, send)
        finally:                # logged once answered: the client does not wait for the line
            _log(request, job, response.status_code, started, why)

    async def answer(self, request: Request, route: Route, json_errors: bool,
                     params: list) -> Tuple[Response, Optional[_Job], str]:
        """The response, the job (None if refused before one), and why it was refused ("")."""
        job, why = None, ""
        try:
            job = self._admit(request, params)
            await job.request.body()        # a slot only for a whole body: a stalled upload holds none
            job.admitted = self.gate.enter()
            if not job.admitted:
                raise Refusal(503, "the server is busy; try again shortly", {"Retry-After": "1"})
            response = await route(job)
        except Exception as exc:                   # noqa: BLE001 - every outcome is mapped here
            refusal = refusal_for(exc)
            if refusal is None:
                LOG.exception("internal error on %s %s", request.method, _path(request))
                refusal = Refusal(500, "internal error")
            response, why = _error_response(refusal, json_errors), refusal.message
        finally:
            if job is not None:
                job.release(self.gate)
                self.metrics.audio.inc(job.seconds or 0.0)
        return response, job, why

    def _admit(self, request: Request, params: list) -> _Job:
        """Everything that can refuse without the body does so before reading a byte."""
        headers = request.headers
        if not self.authorized(headers.get("authorization", "").encode("latin-1", "replace")):
            # Connection: close, so an unauthenticated upload is not read on our dime.
            raise Refusal(401, UNAUTHORIZED, {"WWW-Authenticate": "Bearer", "Connection": "close"})
        if self.engine is None:
            raise Refusal(503, NO_KEY)
        length = headers.get("content-length", "")
        if length.isascii() and length.isdigit() and int(length) > self.options.max_body:
            raise too_large(self.options.max_body)
        query = contract.read_query(request.query_params, params)
        o = self.options
        body = Body(request.receive, o.max_body, o.body_idle, o.body_timeout, o.min_rate, self.buffer)
        job = _Job(request, self.executor, body, self.metrics)
        job.query = query
        return job

    async def stt(self, job: _Job) -> Response:
        pcm, lang = await self._audio(job)
        job.seconds, job.lang = pcm.duration, self.engine.google_language(lang)
        transcript = await job.run(self.engine.recognize, pcm, lang)
        return PlainTextResponse(transcript.text)    # "" is "no speech", as OVOS expects

    async def stt_json(self, job: _Job) -> Response:
        pcm, lang = await read_json_audio(job.request, self.options.default_lang,
                                          self.options.max_audio_seconds)
        job.seconds, job.lang = pcm.duration, self.engine.google_language(lang)
        transcript = await job.run(self.engine.recognize, pcm, lang)
        if transcript.language:                 # what Google heard (it matters for "auto")
            job.lang = to_google(transcript.language)
        # answered in the standard tag (he-IL, zh-CN), as OVOS and the Wyoming server speak
        return JSONResponse({"text": transcript.text, "lang": to_standard(job.lang)})

    async def lang_detect(self, job: _Job) -> Response:
        valid = job.query["valid_langs"]
        pcm, _ = await self._audio(job)
        job.seconds = pcm.duration
        if len(valid) == 1:              # nothing to choose from (as the launcher does), audio read
            job.lang = valid[0]
            return JSONResponse({"lang": valid[0], "conf": 1.0})
        lang, conf = await job.run(self.engine.detect_language, pcm, valid)
        job.lang = lang
        return JSONResponse({"lang": lang, "conf": conf})

    async def _audio(self, job: _Job) -> Any:
        q = job.query
        pcm, lang = await read_audio(job.request, q["lang"], q["sample_rate"], q["sample_width"],
                                     self.options.max_audio_seconds)
        return pcm, lang or self.options.default_lang


def create_app(engine: Any, options: Optional[ServerOptions] = None, **changes: Any) -> FastAPI:
    """The ASGI app. ``engine`` is a GoogleAPIKeySTT, or None when no key is configured (the
    STT routes then answer 503). ``changes`` are ServerOptions fields over ``options`` (or the
    defaults). Raises ValueError for a bad option.

    A request takes one of ``workers + queue`` slots only once its whole body has arrived;
    ``workers`` of them call Google at once, the rest wait their turn; past that, 503.
    """
    options = (options or ServerOptions()).with_(**changes) if changes else options or ServerOptions()
    metrics = Metrics()
    pipeline = Pipeline(engine, options, metrics)
    _reserve_connections(engine, options.workers)
    metrics.watch(engine)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # What start-up made (OVOS, FastAPI, pydantic: ~10^5 objects) lives as long as the
        # process: kept out of the cyclic collector, whose full passes over it took a fifth of
        # the event loop's CPU under load (py-spy --native, bench/profile.py's setup).
        gc.freeze()
        yield
        pipeline.executor.shutdown(wait=False, cancel_futures=True)

    # /docs and /openapi.json are open even with a token (the contract is public, and a
    # browser loads them without one); with a token the schema declares the bearer scheme, so
    # /docs' "Authorize" sends it.
    # fastapi-offline's FastAPI serves Swagger UI's and ReDoc's scripts from its own wheel, so
    # /docs and /redoc work with no internet (FastAPI's own pages load them from a CDN).
    app = FastAPIOffline(title=PLUGIN_ID, version=__version__, lifespan=lifespan, static_url=DOCS_ASSETS,
                         description="Google Cloud Speech-to-Text behind the ovos-stt-http-server routes.")
    app.state.options = options
    app.state.token_required = options.token is not None
    app.state.front = Front(app.router, pipeline, options)
    bearer = [Security(HTTPBearer(auto_error=False))] if options.token else []
    _declare_stt_routes(app, bearer)

    @app.get("/status", **contract.STATUS)
    async def status() -> Dict[str, Any]:
        return {"status": "ok", "plugin": PLUGIN_ID, "lang_plugin": None, "gradio": False,
                "key_configured": engine is not None, "version": __version__,
                "busy": pipeline.gate.busy, "capacity": pipeline.gate.capacity,
                "buffered": pipeline.buffer.held,
                "totals": metrics.totals()}

    @app.get("/metrics", response_class=PlainTextResponse, dependencies=bearer, **contract.METRICS)
    async def metrics_route(request: Request) -> Response:
        if not pipeline.authorized(request.headers.get("authorization", "").encode("latin-1", "replace")):
            return PlainTextResponse(UNAUTHORIZED + "\n", 401, {"WWW-Authenticate": "Bearer"})
        return Response(metrics.exposition(), media_type=METRICS_CONTENT_TYPE)

    @app.get("/", response_class=PlainTextResponse, include_in_schema=False)
    async def root() -> str:
        return "ok"

    # Front and the request metrics go outside FastAPI's own middleware (its error, telemetry
    # and body-limit layers): an STT POST reaches the pipeline through nothing else. Starlette
    # builds this stack at the first request unless it is built already, as here.
    app.state.front.fallback = app.build_middleware_stack()
    app.middleware_stack = RequestMetrics(app.state.front, metrics)
    return app


def _declare_stt_routes(app: FastAPI, bearer: list) -> None:
    """The STT routes as the schema shows them. ``Front`` serves every POST to these paths
    through the pipeline before FastAPI's router is reached, so these bodies never run; they
    exist for /openapi.json (and the router's 405 for another method)."""
    def declared(name: str) -> Callable[[], Awaitable[Response]]:
        async def endpoint() -> Response:
            raise RuntimeError(f"POST {name} reached FastAPI's router")   # pragma: no cover
        endpoint.__name__ = name.strip("/").replace("/", "_")        # the schema's operationId
        return endpoint

    app.post("/stt", response_class=PlainTextResponse, dependencies=bearer,
             **contract.STT)(declared("/stt"))
    app.post("/stt/json", dependencies=bearer, **contract.STT_JSON)(declared("/stt/json"))
    app.post("/lang_detect", dependencies=bearer, **contract.LANG_DETECT)(declared("/lang_detect"))


def _reserve_connections(engine: Any, workers: int) -> None:
    """One connection to Google per worker: the engine's pool blocks when full (16 by default),
    so --workers 32 would otherwise run only 16 requests at once, the rest waiting unseen. And
    as many part workers: long audio from every client would otherwise share the engine's 4."""
    recognizer = getattr(engine, "recognizer", None)      # None: no key, or a test's stand-in
    if recognizer is not None:
        recognizer.reserve(workers)


def _error_response(refusal: Refusal, json_errors: bool) -> Response:
    if json_errors:
        return JSONResponse({"error": refusal.message}, refusal.status, refusal.headers)
    return PlainTextResponse(refusal.message + "\n", refusal.status, refusal.headers)


def _path(request: Request) -> str:
    return printable(request.scope.get("path", ""), MAX_LOGGED_PATH)


def _log(request: Request, job: Optional[_Job], status: int, started: float, why: str) -> None:
    seconds = f"{job.seconds:.2f}s" if job is not None and job.seconds is not None else "-"
    lang = job.lang if job is not None and job.lang else "-"
    LOG.info("%s %s audio=%s lang=%s status=%d %dms%s", request.method, _path(request), seconds,
             lang, status, (time.monotonic() - started) * 1000, f" ({why})" if why else "")
