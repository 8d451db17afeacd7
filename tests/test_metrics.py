"""/metrics and /status totals: what they count, per app, and across processes."""
from __future__ import annotations

import base64
import os
import subprocess
import sys
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, Tuple

import pytest

prometheus_client = pytest.importorskip("prometheus_client")    # the [server] extra
from audio_samples import tone, wav  # noqa: E402
from conftest import KEY, build_plugin  # noqa: E402
from fake_google import Fault, default_recognizer  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from ovos_stt_plugin_google_apikey.server import create_app  # noqa: E402

with warnings.catch_warnings():
    warnings.simplefilter("ignore")            # Starlette's httpx2 hint
    from fastapi.testclient import TestClient

SPEECH = wav(tone(1.0))
TOKEN = "metrics-token-for-tests"
Samples = Dict[Tuple[str, Tuple[Tuple[str, str], ...]], float]


def build_engine(fake, **settings):
    return build_plugin(fake.endpoint, **settings)


@pytest.fixture
def client(engine):
    with TestClient(create_app(engine)) as client:
        yield client


def parse(text: str) -> Samples:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def scrape(client, **headers) -> Samples:
    reply = client.get("/metrics", headers=headers)
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"].startswith("text/plain")
    return parse(reply.text)


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_a_transcription_is_counted_everywhere(client, fake):
    assert client.post("/stt", content=SPEECH).status_code == 200
    assert client.post("/stt", params={"sample_rate": "abc"}, content=SPEECH).status_code == 400
    samples = scrape(client)
    assert value(samples, "google_stt_requests_total", route="/stt", status="200") == 1
    assert value(samples, "google_stt_requests_total", route="/stt", status="400") == 1
    assert value(samples, "google_stt_google_attempts_total", outcome="ok", reason="none") == 1
    assert value(samples, "google_stt_audio_seconds_total") == 1.0
    assert value(samples, "google_stt_billed_seconds_total") == 1.0        # the fake's "1s"
    # Only the request that reached Google has an added latency.
    assert value(samples, "google_stt_added_latency_seconds_count", route="/stt") == 1
    assert value(samples, "google_stt_requests_in_flight") == 0
    assert value(samples, "google_stt_requests_waiting") == 0
    assert len(fake.requests) == 1


def test_google_failures_are_counted_by_reason_and_retries_separately(fake):
    engine = build_engine(fake, retries=1, timeout=5)
    with TestClient(create_app(engine)) as client:
        fake.script(Fault.http(503))
        assert client.post("/stt", content=SPEECH).status_code == 200     # 503, retried, 200
        fake.script(Fault.http(429), Fault.http(429))
        assert client.post("/stt", content=SPEECH).status_code == 503     # 429, retried, 429
        fake.key_errors[KEY] = "invalid"
        assert client.post("/stt", content=SPEECH).status_code == 502     # not retried
        samples = scrape(client)
    engine.shutdown()
    attempts = {(reason, outcome): value(samples, "google_stt_google_attempts_total",
                                         outcome=outcome, reason=reason)
                for reason, outcome in [("none", "ok"), ("unavailable", "error"),
                                        ("quota", "error"), ("key", "error")]}
    assert attempts == {("none", "ok"): 1, ("unavailable", "error"): 1, ("quota", "error"): 2,
                        ("key", "error"): 1}
    assert value(samples, "google_stt_google_retries_total") == 2
    assert len(fake.requests) == 5


def test_a_deadline_is_its_own_reason(fake):
    engine = build_engine(fake, timeout=1)
    fake.script(Fault.hang(5))
    with TestClient(create_app(engine)) as client:
        assert client.post("/stt", content=SPEECH).status_code == 504
        samples = scrape(client)
    engine.shutdown()
    assert value(samples, "google_stt_google_attempts_total", outcome="error", reason="deadline") == 1


def test_requests_in_flight_and_waiting_for_a_worker(fake, engine):
    """One worker: the first request is at Google (held there), the second waits for it."""
    arrived, release = threading.Event(), threading.Event()

    def held(req, audio):
        arrived.set()
        release.wait(20)
        return default_recognizer(req, audio)

    fake.recognizer = held
    with TestClient(create_app(engine, workers=1)) as client, ThreadPoolExecutor(2) as pool:
        first = pool.submit(client.post, "/stt", content=SPEECH)
        assert arrived.wait(20)
        second = pool.submit(client.post, "/stt", content=SPEECH)
        try:
            deadline = time.monotonic() + 20        # until the second has its audio read
            samples = scrape(client)
            while value(samples, "google_stt_requests_waiting") < 1 and time.monotonic() < deadline:
                samples = scrape(client)
            assert value(samples, "google_stt_requests_waiting") == 1
            assert value(samples, "google_stt_requests_in_flight") == 2
        finally:
            release.set()
        assert first.result(20).status_code == second.result(20).status_code == 200
        samples = scrape(client)
    assert value(samples, "google_stt_requests_waiting") == 0
    assert value(samples, "google_stt_requests_in_flight") == 0
    assert value(samples, "google_stt_requests_total", route="/stt", status="200") == 2


def test_every_route_is_counted_with_bounded_labels(client):
    client.get("/status")
    client.get("/no/such/route")
    client.post("/stt/json", json={"audio_b64": base64.b64encode(SPEECH).decode()})
    samples = scrape(client)
    assert value(samples, "google_stt_requests_total", route="/status", status="200") == 1
    assert value(samples, "google_stt_requests_total", route="other", status="404") == 1
    assert value(samples, "google_stt_requests_total", route="/stt/json", status="200") == 1


def test_two_apps_in_one_process_count_apart(fake):
    one, two = build_engine(fake), build_engine(fake)
    with TestClient(create_app(one)) as first, TestClient(create_app(two)) as second:
        assert first.post("/stt", content=SPEECH).status_code == 200
        assert value(scrape(first), "google_stt_requests_total", route="/stt", status="200") == 1
        assert value(scrape(second), "google_stt_requests_total", route="/stt", status="200") == 0
    one.shutdown()
    two.shutdown()


def test_status_shows_totals_since_start(client):
    client.post("/stt", content=wav(tone(2.5)))
    client.post("/lang_detect", params={"valid_langs": "en-US,pt-PT"}, content=SPEECH)
    totals = client.get("/status").json()["totals"]
    # 2.5 s billed 3 s; detection sent 1 s once (both candidates in one request): 1 s.
    assert totals["requests"] == 2 and totals["audio_seconds"] == 3.5
    assert totals["billed_seconds"] == 4.0 and totals["since"] > 0


def test_metrics_need_the_token_when_one_is_set(engine):
    with TestClient(create_app(engine, token=TOKEN)) as client:
        refused = client.get("/metrics")
        assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
        assert client.get("/metrics", headers={"Authorization": "Bearer nope"}).status_code == 401
        assert "google_stt_requests_total" in client.get(
            "/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).text
        assert client.get("/status").status_code == 200          # the health check stays open


SERVE_ONE = """
import sys, warnings
from ovos_stt_plugin_google_apikey.plugin import GoogleAPIKeySTT
from ovos_stt_plugin_google_apikey.server import create_app
warnings.simplefilter("ignore")
from fastapi.testclient import TestClient
engine = GoogleAPIKeySTT({"key": "test-key", "endpoint": sys.argv[1], "lang": "en-US"})
with TestClient(create_app(engine)) as client:
    assert client.post("/stt", content=open(sys.argv[2], "rb").read()).status_code == 200
    if sys.argv[3] == "scrape":    # to a file: OVOS's LOG prints its lines on stdout
        open(sys.argv[4], "w").write(client.get("/metrics").text)
engine.shutdown()
"""


def test_several_processes_are_aggregated_with_prometheus_multiproc_dir(fake, tmp_path):
    """What `serve --processes N` needs: each process writes its counts to the directory, and
    any one of them answers /metrics with the sum."""
    shared = tmp_path / "prometheus"
    shared.mkdir()
    (tmp_path / "speech.wav").write_bytes(SPEECH)
    env = {"PATH": os.environ["PATH"], "XDG_CONFIG_HOME": os.environ["XDG_CONFIG_HOME"],
           "PYTHONPATH": os.pathsep.join(sys.path), "PROMETHEUS_MULTIPROC_DIR": str(shared)}
    scraped = tmp_path / "metrics.txt"
    for role in ("count", "count", "scrape"):
        done = subprocess.run([sys.executable, "-c", SERVE_ONE, fake.endpoint,
                               str(tmp_path / "speech.wav"), role, str(scraped)],
                              capture_output=True, text=True, timeout=60, env=env)
        assert done.returncode == 0, done.stderr
    samples = parse(scraped.read_text())
    assert value(samples, "google_stt_requests_total", route="/stt", status="200") == 3
    assert value(samples, "google_stt_billed_seconds_total") == 3.0
    assert value(samples, "google_stt_requests_in_flight") == 0
    assert len(fake.requests) == 3


DIES_BUSY = """
import os
from ovos_stt_plugin_google_apikey.server.metrics import Metrics
metrics = Metrics()
metrics.in_flight.inc(2)
metrics.waiting.inc()
metrics.audio.inc(7)
os._exit(0)                        # a worker that crashed with requests in flight
"""


def test_a_dead_workers_gauges_leave_the_sum_and_its_counts_stay(fake, tmp_path):
    shared = tmp_path / "prometheus"
    shared.mkdir()
    (tmp_path / "speech.wav").write_bytes(SPEECH)
    env = {"PATH": os.environ["PATH"], "XDG_CONFIG_HOME": os.environ["XDG_CONFIG_HOME"],
           "PYTHONPATH": os.pathsep.join(sys.path), "PROMETHEUS_MULTIPROC_DIR": str(shared)}
    died = subprocess.run([sys.executable, "-c", DIES_BUSY], capture_output=True, text=True,
                          timeout=60, env=env)
    assert died.returncode == 0, died.stderr
    assert any(name.startswith("gauge_livesum_") for name in os.listdir(shared))
    scraped = tmp_path / "metrics.txt"
    done = subprocess.run([sys.executable, "-c", SERVE_ONE, fake.endpoint, str(tmp_path / "speech.wav"),
                           "scrape", str(scraped)], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    samples = parse(scraped.read_text())
    assert value(samples, "google_stt_requests_in_flight") == 0
    assert value(samples, "google_stt_requests_waiting") == 0
    assert value(samples, "google_stt_audio_seconds_total") == 8.0      # 7 from the dead one
