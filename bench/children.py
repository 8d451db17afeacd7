"""Processes of the benchmark: the fake Google or the HTTP server, each alone with its own GIL and RSS.

``python bench/children.py fake --delay 0.2`` or ``... server --endpoint URL --workers 32 --queue 32``:
prints one line (the endpoint, or the port) and runs until its stdin closes.
"""
from __future__ import annotations

import argparse
import os
import socket
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any, Dict, List, Optional

ROOT = Path(__file__).resolve().parent.parent
KEY = "bench-key"


def isolate() -> None:
    """Never read the developer's mycroft.conf or a real key (as tests/conftest.py does)."""
    os.environ["XDG_CONFIG_HOME"] = tempfile.mkdtemp(prefix="google-stt-bench-")
    for name in ("GOOGLE_STT_API_KEY", "STT_PW"):
        os.environ.pop(name, None)
    for path in (str(ROOT / "tests"), str(ROOT)):
        if path not in sys.path:
            sys.path.insert(0, path)


def constant_answer(req: Dict[str, Any], audio: Any) -> Dict[str, Any]:
    """A fixed transcript: the fake's default recognizer computes the RMS in pure Python
    (~15 ms for 5 s of audio), which would be counted as our overhead."""
    return {"results": [{"alternatives": [{"transcript": "turn on the kitchen lights", "confidence": 0.93}],
                         "languageCode": req["config"]["languageCode"].lower()}],
            "totalBilledTime": "5s", "requestId": "1"}


def start_fake(delay: float) -> Any:
    """A running FakeGoogle (in this process) with a bench-sized listen backlog and a cheap answer."""
    import fake_google
    # socketserver's default backlog of 5 drops SYNs when 64 clients connect at once (1 s retransmits).
    fake_google._Server.request_queue_size = 1024
    fake = fake_google.FakeGoogle(valid_keys=(KEY,), delay=delay)
    fake.start()
    fake.recognizer = constant_answer
    return fake


def engine_config(endpoint: str, **extra: Any) -> Dict[str, Any]:
    return {"key": KEY, "endpoint": endpoint, "lang": "en-US", "timeout": 60, **extra}


def _run_fake(args: argparse.Namespace) -> None:
    fake = start_fake(args.delay)
    print(fake.endpoint, flush=True)
    sys.stdin.read()
    fake.stop()


def _run_server(args: argparse.Namespace) -> None:
    from ovos_stt_plugin_google_apikey import server
    from ovos_stt_plugin_google_apikey.plugin import GoogleAPIKeySTT
    extra = {"max_workers": args.max_workers} if args.max_workers else {}
    engine = GoogleAPIKeySTT(engine_config(args.endpoint, **extra))
    app = server.create_app(engine, workers=args.workers, queue=args.queue)
    uv = server.make_server(app, "127.0.0.1", 0)
    # proto must say TCP: asyncio sets TCP_NODELAY on accepted sockets only then, and without it
    # Nagle plus delayed ACK add ~40 ms to every answer (uvicorn's own bind does this right).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(2048)            # connections wait in the backlog until uvicorn is up
    print(sock.getsockname()[1], engine.recognizer.client.pool_size, flush=True)

    def stop_on_eof() -> None:
        sys.stdin.read()
        uv.should_exit = True

    threading.Thread(target=stop_on_eof, daemon=True).start()
    uv.run(sockets=[sock])
    engine.shutdown()


def main(argv: Optional[List[str]] = None) -> None:
    isolate()
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="what", required=True)
    fake = sub.add_parser("fake")
    fake.add_argument("--delay", type=float, required=True)
    fake.set_defaults(func=_run_fake)
    serve = sub.add_parser("server")
    serve.add_argument("--endpoint", required=True)
    serve.add_argument("--workers", type=int, required=True)
    serve.add_argument("--queue", type=int, required=True)
    serve.add_argument("--max-workers", type=int, default=0)
    serve.set_defaults(func=_run_server)
    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
