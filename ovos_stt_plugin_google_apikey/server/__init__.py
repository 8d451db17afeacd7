"""The companion HTTP server (the ``[server]`` extra): ovos-stt-http-server's routes in front of
the plugin's engine, for OVOS devices that send audio over HTTP.

| module | owns |
|---|---|
| ``options`` | ``ServerOptions``: every limit, its default, validation and command-line form |
| ``app`` | ``create_app``: the FastAPI app, and the STT request ``Pipeline`` |
| ``front`` | what every request meets first: Host and Origin checks, the STT dispatch |
| ``admission`` | slots, the bytes of bodies held, body deadlines and minimum rate |
| ``uploads`` | reading audio and parameters from a request; ``Refusal`` |
| ``contract`` | the OpenAPI contract, and the query parameters declared once |
| ``metrics`` | Prometheus metrics and /status totals |
| ``serving`` | uvicorn: the connection guard, signals, the open-file limit |
"""
from __future__ import annotations

from .app import create_app
from .options import ServerOptions
from .serving import make_server, run, run_processes

__all__ = ["ServerOptions", "create_app", "make_server", "run", "run_processes"]
