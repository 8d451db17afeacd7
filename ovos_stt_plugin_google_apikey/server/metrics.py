"""Prometheus metrics of the companion server: one registry per app; with several processes on
one port (PROMETHEUS_MULTIPROC_DIR set) every process's counts, aggregated on each scrape."""
from __future__ import annotations

import os
import re
import time
from concurrent.futures import Executor, Future
from typing import Any, Callable, Dict, Optional

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .. import errors
from ..wire import billed_seconds

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
LIVE_GAUGE_FILE = re.compile(r"gauge_live\w*?_(\d+)\.db")   # prometheus_client's per-process file
CONTENT_TYPE = CONTENT_TYPE_LATEST
# /docs, /redoc and the schema are counted by their path too
ROUTES = ("/stt", "/stt/json", "/lang_detect", "/status", "/metrics", "/", "/docs",
          "/docs/oauth2-redirect", "/redoc", "/openapi.json")
STT_ROUTES = ("/stt", "/stt/json", "/lang_detect")
# Added latency is small when all is well (ms of decoding); the top buckets catch a queue.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
GOOGLE_SECONDS = "google_seconds"        # request.state: seconds this request spent on Google
# Why an attempt failed, most specific first (DeadlineError is an UnavailableError).
REASONS = ((errors.QuotaError, "quota"), (errors.CredentialsError, "key"),
           (errors.DeadlineError, "deadline"), (errors.UnavailableError, "unavailable"),
           (errors.APIError, "rejected"))


def multiprocess_dir() -> Optional[str]:
    return os.environ.get(MULTIPROC_ENV) or None


class Metrics:
    """The server's counters. ``registry`` is this app's own, so several apps in one process
    (tests) never share a count."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.started = time.time()
        r = self.registry
        self.requests = Counter("google_stt_requests", "HTTP requests answered, by route and status",
                                ["route", "status"], registry=r)
        self.added_latency = Histogram(
            "google_stt_added_latency_seconds",
            "Time a request spent in this server, minus the time its engine call took (Google)",
            ["route"], buckets=LATENCY_BUCKETS, registry=r)
        self.attempts = Counter("google_stt_google_attempts", "Requests sent to Google, by outcome "
                                "(ok, error) and reason (none, quota, key, unavailable, deadline, "
                                "rejected)", ["outcome", "reason"], registry=r)
        self.retries = Counter("google_stt_google_retries", "Attempts that retried a failed one",
                               registry=r)
        self.in_flight = Gauge("google_stt_requests_in_flight", "STT requests being handled",
                               registry=r, multiprocess_mode="livesum")
        self.waiting = Gauge("google_stt_requests_waiting",
                             "Requests with their audio read, waiting for a free Google worker",
                             registry=r, multiprocess_mode="livesum")
        self.audio = Counter("google_stt_audio_seconds", "Seconds of audio received", registry=r)
        self.billed = Counter("google_stt_billed_seconds",
                              "Seconds Google billed (its totalBilledTime), summed", registry=r)

    def watch(self, engine: Any) -> None:
        """Count every attempt ``engine``'s client makes (it has one observer: the last app's)."""
        recognizer = getattr(engine, "recognizer", None)
        if recognizer is not None:
            recognizer.observe_attempts(self.attempt)

    def attempt(self, result: Any, seconds: float, retry: bool) -> None:
        """The client's observer: one finished attempt (its 200 JSON or its APIError)."""
        if retry:
            self.retries.inc()
        if isinstance(result, errors.APIError):
            reason = next(name for cls, name in REASONS if isinstance(result, cls))
            self.attempts.labels("error", reason).inc()
            return
        self.attempts.labels("ok", "none").inc()
        self.billed.inc(billed_seconds(result) or 0.0)

    def submit(self, executor: Executor, state: Any, fn: Callable[..., Any], *args: Any) -> Future:
        """``executor.submit(fn, *args)``, counted as waiting until a worker takes it; the
        seconds ``fn`` takes are added to ``state.google_seconds``."""
        def timed() -> Any:
            self.waiting.dec()
            started = time.monotonic()
            try:
                return fn(*args)
            finally:
                setattr(state, GOOGLE_SECONDS,
                        getattr(state, GOOGLE_SECONDS, 0.0) + time.monotonic() - started)

        self.waiting.inc()
        future = executor.submit(timed)
        future.add_done_callback(lambda f: self.waiting.dec() if f.cancelled() else None)
        return future

    def totals(self) -> Dict[str, Any]:
        """This process's totals since it started, for /status."""
        answered = sum(s.value for m in self.requests.collect() for s in m.samples
                       if s.name.endswith("_total") and s.labels["route"] in STT_ROUTES)
        return {"since": round(self.started), "requests": int(answered),
                "audio_seconds": round(_value(self.audio), 3),
                "billed_seconds": round(_value(self.billed), 3)}

    def exposition(self) -> bytes:
        """The text format of every metric: this app's, or all processes' in multiprocess mode."""
        directory = multiprocess_dir()
        if directory is None:
            return generate_latest(self.registry)
        _forget_dead_processes(directory)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)


def _forget_dead_processes(directory: str) -> None:
    """Drop the live gauges of processes that are gone (a worker that crashed, or was killed,
    left its in-flight count behind; uvicorn starts another in its place). Counters stay."""
    for name in os.listdir(directory):
        match = LIVE_GAUGE_FILE.fullmatch(name)
        if match is None:
            continue
        pid = int(match.group(1))
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            multiprocess.mark_process_dead(pid, directory)
        except OSError:                  # PermissionError: alive, another user's
            pass


def _value(counter: Counter) -> float:
    return sum(s.value for m in counter.collect() for s in m.samples if s.name.endswith("_total"))


class RequestMetrics:
    """ASGI middleware: every answer by route and status, STT requests in flight, and the
    latency this server added to each request that reached the engine."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        route = path if path in ROUTES else "other"        # bounded label values
        state = scope.setdefault("state", {})
        status = 500                                         # if the app raises before answering
        started = time.monotonic()

        async def send_counted(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        counted = route in STT_ROUTES
        if counted:
            self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_counted)
        finally:
            if counted:
                self.metrics.in_flight.dec()
            self.metrics.requests.labels(route, str(status)).inc()
            if GOOGLE_SECONDS in state:
                added = time.monotonic() - started - state[GOOGLE_SECONDS]
                self.metrics.added_latency.labels(route).observe(max(0.0, added))
