"""The server under a crowd and a hostile network, over real sockets on loopback: a slot only for
a whole body, body deadlines (408), hundreds of requests in flight, `serve --processes`."""
from __future__ import annotations

import json
import os
import select
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from audio_samples import tone, wav

pytest.importorskip("fastapi")

import fake_google  # noqa: E402
from test_server import HEARD, KEY, SPEECH, build_engine, running, serve_command  # noqa: E402

from ovos_stt_plugin_google_apikey import cli  # noqa: E402
from ovos_stt_plugin_google_apikey.server import ServerOptions, create_app  # noqa: E402

HANG_GUARD = 20          # seconds: only catches a hang, never judges speed


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def half_sent(port: int, declared: int = 100_000, sent: int = 1_000) -> socket.socket:
    """An upload that announces ``declared`` bytes, sends ``sent`` and goes quiet (no FIN)."""
    conn = socket.create_connection(("127.0.0.1", port), timeout=HANG_GUARD)
    conn.sendall(b"POST /stt HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: audio/wav\r\n"
                 b"Content-Length: %d\r\n\r\n" % declared + bytes(sent))
    return conn


def answer_of(conn: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    received = b""
    while True:
        chunk = conn.recv(65536)
        if not chunk:
            return received
        received += chunk


def status_line(answer: bytes) -> bytes:
    return answer.split(b"\r\n", 1)[0]


@pytest.fixture
def engine(plugin):
    return plugin(timeout=10)


def test_silent_half_sent_uploads_hold_no_slot_and_get_408(engine, fake):
    # Two slots only, 64 silent uploads: before, each held a slot and /stt answered 503.
    app = create_app(engine, workers=2, queue=0, body_idle=2.0)
    with running(app) as url:
        silent = [half_sent(port_of(url)) for _ in range(64)]
        try:
            reply = requests.post(f"{url}/stt", data=SPEECH, timeout=HANG_GUARD)
            status = requests.get(f"{url}/status", timeout=HANG_GUARD).json()
            answers = [answer_of(conn) for conn in silent]       # each ends when the server closes
        finally:
            for conn in silent:
                conn.close()
    assert (reply.status_code, reply.text) == (200, HEARD)
    assert status["busy"] == 0 and status["capacity"] == 2
    assert {status_line(a) for a in answers} == {b"HTTP/1.1 408 Request Timeout"}
    assert all(b"connection: close" in a.lower() and b"no byte of the body for 2 s" in a
               for a in answers)
    assert len(fake.requests) == 1


def test_a_trickling_upload_gets_408_at_the_body_time_limit(engine, fake):
    # No gap reaches --body-idle, yet the body is not whole when --body-timeout is up. The
    # trickle stops 1 s before that limit: a server closing while bytes still arrive sends a
    # TCP reset that can wipe its answer from the client's buffer (uvicorn has no lingering
    # close), and this test is about the 408, not that race.
    app = create_app(engine, body_idle=5.0, body_timeout=1.5)
    with running(app) as url, half_sent(port_of(url), sent=44) as conn:
        for _ in range(5):                                      # one byte every 0.1 s
            assert not select.select([conn], [], [], 0.1)[0], "answered before the time limit"
            conn.sendall(b"\x00")
        answer = answer_of(conn)
    assert status_line(answer) == b"HTTP/1.1 408 Request Timeout"
    assert b"connection: close" in answer.lower() and b"the body took over 1.5 s" in answer
    assert fake.requests == []


def test_408_is_a_json_error_on_stt_json(engine, fake):
    with running(create_app(engine, body_idle=0.5)) as url:
        with socket.create_connection(("127.0.0.1", port_of(url)), timeout=HANG_GUARD) as conn:
            conn.sendall(b"POST /stt/json HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 1000\r\n\r\n{\"audio_b64\": \"")
            answer = answer_of(conn)
    assert status_line(answer) == b"HTTP/1.1 408 Request Timeout"
    assert "no byte of the body" in json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]


@pytest.fixture
def roomy_fake(monkeypatch):
    """A fake Google taking 1 s, with a listen backlog for hundreds of connections at once
    (socketserver's default of 5 would cost SYN retransmits, not failures)."""
    monkeypatch.setattr(fake_google._Server, "request_queue_size", 1024)
    with fake_google.FakeGoogle(delay=1.0) as fake:
        yield fake


def test_256_concurrent_clients_all_get_their_transcript(roomy_fake):
    engine = build_engine(roomy_fake, timeout=30)
    longest = tone(3.06, freq=300)
    pcms = [longest[:2 * (8000 + 160 * n)] for n in range(256)]      # each its own length
    try:
        with running(create_app(engine)) as url, ThreadPoolExecutor(256) as pool:   # the defaults
            replies = list(pool.map(lambda clip: requests.post(f"{url}/stt", data=clip,
                                                               timeout=60), map(wav, pcms)))
            status = requests.get(f"{url}/status", timeout=HANG_GUARD)
    finally:
        engine.shutdown()
    assert [r.status_code for r in replies] == [200] * 256
    assert [r.text for r in replies] == [f"audio {len(pcm) / 32000:.2f} seconds at 16000 hertz"
                                         for pcm in pcms]
    assert len(roomy_fake.requests) == 256
    assert status.status_code == 200 and status.json()["capacity"] >= 256


def test_bodies_held_past_max_buffered_get_503_and_are_let_go(engine, fake):
    released = threading.Event()

    def held_until_released(req, audio):       # the first request holds its body meanwhile
        released.wait(HANG_GUARD)
        return fake_google.default_recognizer(req, audio)

    fake.recognizer = held_until_released
    body = tone(1.5)                           # 48,000 bytes of raw PCM
    app = create_app(engine, max_body=64 * 1024, max_buffered=64 * 1024)
    with running(app) as url, ThreadPoolExecutor(1) as pool:
        first = pool.submit(requests.post, f"{url}/stt", data=body, timeout=HANG_GUARD)
        deadline = time.monotonic() + HANG_GUARD
        while requests.get(f"{url}/status", timeout=HANG_GUARD).json()["busy"] == 0:
            assert time.monotonic() < deadline and not first.done(), "the first request never started"
            time.sleep(0.02)
        refused = requests.post(f"{url}/stt", data=body, timeout=HANG_GUARD)
        released.set()
        assert first.result().status_code == 200
        after = requests.post(f"{url}/stt", data=body, timeout=HANG_GUARD)
    assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
    assert "too many uploads" in refused.text
    assert (after.status_code, after.text) == (200, "audio 1.50 seconds at 16000 hertz")
    assert len(fake.requests) == 2


def post_from(source: str, port: int, body: bytes) -> bytes:
    """A raw POST /stt from another loopback address (127.0.0.0/8 is all this machine)."""
    with socket.create_connection(("127.0.0.1", port), timeout=HANG_GUARD,
                                  source_address=(source, 0)) as conn:
        conn.sendall(b"POST /stt HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(body) + body)
        return answer_of(conn)


def test_stalled_uploads_make_room_for_a_client_at_the_same_address(engine, fake):
    """Stalled uploads from 127.0.0.1 hold 360 of 400 KB; another client at 127.0.0.1 (where
    every local client is) is served, and only the longest-silent stalled upload is let go
    (503). Before, a quarter of the buffer per address: the stalled ones locked 127.0.0.1 out."""
    app = create_app(engine, max_body=100_000, max_buffered=400_000, body_idle=60)
    with running(app) as url:
        port = port_of(url)
        uploads = []
        try:
            for n in range(4):
                uploads.append(half_sent(port, declared=100_000, sent=90_000))
                held_bytes_reach(url, 90_000 * (n + 1))     # in this order, for the server too
            other = post_from("127.0.0.1", port, tone(1.5))
            answers = {conn: status_line(answer_of(conn)) for conn in
                       select.select(uploads, [], [], HANG_GUARD)[0]}
            still_open = [conn for conn in uploads if not select.select([conn], [], [], 0)[0]]
            status = requests.get(f"{url}/status", timeout=HANG_GUARD).json()
        finally:
            for conn in uploads:
                conn.close()
    assert status_line(other) == b"HTTP/1.1 200 OK" and other.endswith(b"audio 1.50 seconds at 16000 hertz")
    assert list(answers) == [uploads[0]] and answers[uploads[0]] == b"HTTP/1.1 503 Service Unavailable"
    assert still_open == uploads[1:]
    assert status["busy"] == 0 and len(fake.requests) == 1


def held_bytes_reach(url: str, size: int) -> None:
    """Wait until the server holds ``size`` bytes of bodies (/status' ``buffered``)."""
    deadline = time.monotonic() + HANG_GUARD
    while requests.get(f"{url}/status", timeout=HANG_GUARD).json()["buffered"] != size:
        assert time.monotonic() < deadline, "the server never held the bytes sent"
        time.sleep(0.01)


@pytest.mark.parametrize("limits", [dict(body_idle=0), dict(body_timeout=-1),
                                    dict(max_buffered=1000, max_body=2000), dict(workers=0)])
def test_bad_limits_are_refused_at_start(engine, limits):
    with pytest.raises(ValueError):
        create_app(engine, **limits)


def test_serve_options_are_server_options():
    """The CLI builds its flags from ServerOptions: no second copy of a default to keep in step."""
    assert cli._server_options(cli.build_parser().parse_args(["serve"])) == ServerOptions()
    given = cli.build_parser().parse_args(["serve", "--workers", "3", "--allow-origin", "https://a.example",
                                           "--allow-origin", "https://b.example"])
    assert cli._server_options(given) == ServerOptions(
        workers=3, allow_origin=("https://a.example", "https://b.example"))


def _workers_of(pid: int) -> list:
    """The uvicorn worker processes under ``pid`` (multiprocessing's spawned children)."""
    found = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as f:
            for child in f.read().split():
                with open(f"/proc/{child}/cmdline", "rb") as cmd:
                    if b"spawn_main" in cmd.read():
                        found.append(int(child))
    return found


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="reads the process tree from /proc")
def test_serve_processes_runs_workers_on_one_port_with_the_key_from_the_environment(fake, tmp_path):
    (tmp_path / "conf.json").write_text(json.dumps({"lang": "en-US", "retries": 0}))
    args = ["--endpoint", fake.endpoint, "--config", str(tmp_path / "conf.json"), "--processes", "2"]
    with serve_command(args, {"GOOGLE_STT_API_KEY": KEY}) as (url, process):
        deadline = time.monotonic() + 60              # the second worker may start later
        while len(_workers_of(process.pid)) < 2:
            assert time.monotonic() < deadline, "two workers did not start"
            time.sleep(0.1)
        status = requests.get(f"{url}/status", timeout=HANG_GUARD)
        replies = [requests.post(f"{url}/stt", data=SPEECH, timeout=HANG_GUARD) for _ in range(4)]
        scraped = requests.get(f"{url}/metrics", timeout=HANG_GUARD).text
        workers = _workers_of(process.pid)
        process.terminate()
        assert process.wait(timeout=HANG_GUARD) is not None
        log = process.stderr.read()
    assert status.status_code == 200 and status.json()["key_configured"] is True
    assert [(r.status_code, r.text) for r in replies] == [(200, HEARD)] * 4
    assert len(workers) == 2
    # The workers count into a shared directory (prometheus_client's multiprocess mode, which
    # writes no `_created` series; one process's own registry would), and whichever worker
    # answers /metrics counts all four, wherever they were served.
    assert "google_stt_requests_created" not in scraped
    counted = [line for line in scraped.splitlines()
               if line.startswith('google_stt_requests_total{') and 'route="/stt"' in line]
    assert [float(line.rsplit(" ", 1)[1]) for line in counted] == [4.0], scraped
    assert fake.requests[0].headers["X-Goog-Api-Key"] == KEY and KEY not in log
