"""Yardsticks for a Python server in the middle: two forwarders with none of this server's
checks, limits, deadlines, logging or metrics, for bench/peers.py --floors to measure beside it.

    python bench/floors.py threads|asyncio PORT     (FLOOR_ENDPOINT, FLOOR_KEY in the environment)

Both run on uvicorn with httptools, read the WAV, base64 it (pybase64, as this server does, when
it is installed) between a ready-made JSON head and tail, post that to FLOOR_ENDPOINT over a
kept-alive connection, and answer Google's transcript, or 502 when Google did not answer 200.
`threads` makes the Google call as this server does, blocking, on a worker thread (urllib3, what
requests runs on); `asyncio` makes it on the event loop with no thread at all, which a server
built on the plugin's requests-based engine cannot do. They trust every byte of the upload: a
bench yardstick, never something to serve with.
"""
from __future__ import annotations

import asyncio
import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any, List, Tuple
from urllib.parse import urlsplit

import urllib3
import uvicorn

try:
    from pybase64 import b64encode
except ImportError:                  # the [server] extra installs it; the stdlib's makes the same bytes
    from base64 import b64encode

ENDPOINT = os.environ.get("FLOOR_ENDPOINT", "http://127.0.0.1:9")
KEY = os.environ.get("FLOOR_KEY", "")
PATH = "/v1/speech:recognize"
WAV_HEADER = 44                     # the bench's clips (audio.to_wav): PCM after a 44-byte header

CONFIG = {"encoding": "LINEAR16", "sampleRateHertz": 16000, "languageCode": "en-US"}
HEAD = b'{"config": ' + json.dumps(CONFIG).encode() + b', "audio": {"content": "'
TAIL = b'"}}'


class NotAnswered(Exception):
    """Google's status was not 200."""


def _google_body(wav: bytes) -> bytes:
    return b"".join((HEAD, b64encode(wav[WAV_HEADER:]), TAIL))


def _transcript(status: int, answer: bytes) -> bytes:
    if status != 200:
        raise NotAnswered(status)
    results = json.loads(answer).get("results", [])
    return " ".join(r["alternatives"][0]["transcript"] for r in results).encode()


_pool = urllib3.PoolManager(maxsize=64)
_workers = ThreadPoolExecutor(64)


def _blocking_call(wav: bytes) -> bytes:
    answer = _pool.request("POST", ENDPOINT + PATH, body=_google_body(wav),
                           headers={"X-Goog-Api-Key": KEY, "Content-Type": "application/json"})
    return _transcript(answer.status, answer.data)


async def threads(wav: bytes) -> bytes:
    return await asyncio.wrap_future(_workers.submit(_blocking_call, wav))


_idle: List[Tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []


async def on_the_loop(wav: bytes) -> bytes:
    where = urlsplit(ENDPOINT)
    body = _google_body(wav)
    reader, writer = _idle.pop() if _idle else await asyncio.open_connection(where.hostname, where.port)
    writer.write(f"POST {PATH} HTTP/1.1\r\nHost: {where.netloc}\r\nX-Goog-Api-Key: {KEY}\r\n"
                 f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    length = next(int(line.split(b":")[1]) for line in lines if line.lower().startswith(b"content-length:"))
    answer = await reader.readexactly(length)
    _idle.append((reader, writer))
    return _transcript(int(lines[0].split()[1]), answer)


CALLS = {"threads": threads, "asyncio": on_the_loop}


def app_for(kind: str) -> Any:
    call = CALLS[kind]

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                await send({"type": message["type"] + ".complete"})
                if message["type"] == "lifespan.shutdown":
                    return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        status, text = 200, b"ok"
        if scope["method"] == "POST":
            try:
                text = await call(b"".join(chunks))
            except NotAnswered as refused:
                status, text = 502, f"Google answered {refused}".encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"text/plain; charset=utf-8")]})
        await send({"type": "http.response.body", "body": text})

    return app


if __name__ == "__main__":
    uvicorn.run(app_for(sys.argv[1]), host="127.0.0.1", port=int(sys.argv[2]), http="httptools",
                access_log=False, log_level="warning")
