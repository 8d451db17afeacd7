"""The server gives each of its workers a connection to Google (found by bench/: issue 5)."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from audio_samples import tone

pytest.importorskip("fastapi")

from ovos_stt_plugin_google_apikey.plugin import GoogleAPIKeySTT  # noqa: E402
from ovos_stt_plugin_google_apikey.server import create_app  # noqa: E402

WORKERS = 24          # over the engine's default pool of 16


def test_server_workers_all_reach_google_at_once(fake):
    engine = GoogleAPIKeySTT({"key": "test-key", "endpoint": fake.endpoint, "lang": "en-US", "timeout": 10})
    default_pool = engine.recognizer.client.pool_size
    assert default_pool < WORKERS
    create_app(engine, workers=WORKERS)
    assert engine.recognizer.client.pool_size == WORKERS
    fake.delay = 0.4
    audio = tone(0.5)
    with ThreadPoolExecutor(WORKERS) as pool:
        texts = list(pool.map(engine.execute, [audio] * WORKERS))
    engine.shutdown()
    assert all(texts)
    # All in flight at once, each on its own connection; the old pool stopped at 16 and the
    # other 8 waited a whole round. (Not timed: the fake's listen backlog of 5 can cost a SYN
    # retransmit of 1 s when 24 clients connect at once.)
    assert fake.connections == WORKERS


def test_a_smaller_worker_count_keeps_the_pool(fake):
    engine = GoogleAPIKeySTT({"key": "test-key", "endpoint": fake.endpoint, "lang": "en-US"})
    before = engine.recognizer.client.pool_size
    create_app(engine, workers=2)
    assert engine.recognizer.client.pool_size == before
    engine.shutdown()
