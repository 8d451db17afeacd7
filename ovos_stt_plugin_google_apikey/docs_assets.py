"""/docs and /redoc that work with no internet: the app is fastapi-offline's FastAPI, which
serves Swagger UI's and ReDoc's scripts and styles from its own wheel (the server extra), not
from a CDN (FastAPI's default pages load them from jsDelivr: blank without a network)."""
from __future__ import annotations

from typing import Any

from fastapi import FastAPI

# The pages and what they load; metrics.py labels these by their path.
DOCS_PATHS = ("/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json")
STATIC_PATH = "/docs-assets"


def app_with_offline_docs(**options: Any) -> FastAPI:
    """``FastAPI(**options)`` with /docs and /redoc served from local assets."""
    from fastapi_offline import FastAPIOffline
    return FastAPIOffline(static_url=STATIC_PATH, **options)
