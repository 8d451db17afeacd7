"""The docs routes without a browser (issue 19): /docs and /redoc load their scripts from this
server, which serves them; /metrics counts them by their path, not as "other"."""
from __future__ import annotations

import re

import requests
from test_server import build_engine, running

from ovos_stt_plugin_google_apikey.server import create_app


def test_docs_pages_load_local_assets_and_are_counted_by_path(fake):
    engine = build_engine(fake)
    try:
        with running(create_app(engine)) as url:
            for page in ("/docs", "/redoc"):
                html = requests.get(url + page, timeout=10).text
                assets = re.findall(r'(?:src|href)="([^"]+\.(?:js|css))"', html)
                assert assets and all(a.startswith("/docs-assets/") for a in assets), assets
                for asset in assets:
                    reply = requests.get(url + asset, timeout=10)
                    assert reply.status_code == 200 and len(reply.content) > 10000, asset
            assert requests.get(url + "/openapi.json", timeout=10).status_code == 200
            metrics = requests.get(url + "/metrics", timeout=10).text
    finally:
        engine.shutdown()
    for route in ("/docs", "/redoc", "/openapi.json"):
        assert f'google_stt_requests_total{{route="{route}",status="200"}} 1.0' in metrics, route
