"""Issue 17's floods and abuse, each over real sockets at the defaults, bounded in count and
time: what is served, what is refused, what is counted. (How long things take is for
bench/, not here.)"""
from __future__ import annotations

import contextlib
import logging
import os
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

pytest.importorskip("fastapi")

from audio_samples import tone, wav  # noqa: E402
from test_server import HEARD, KEY, SPEECH, TOKEN, build_engine, running  # noqa: E402

from ovos_stt_plugin_google_apikey import cli  # noqa: E402
from ovos_stt_plugin_google_apikey.server import create_app, make_server  # noqa: E402

HANG_GUARD = 30          # seconds: only catches a hang, never judges speed
C1_AND_C0 = [chr(c) for c in (*range(0x00, 0x20), *range(0x7f, 0xa0))]


@pytest.fixture
def engine(plugin):
    return plugin(timeout=10)


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def read_all(conn: socket.socket) -> bytes:
    received = b""
    with contextlib.suppress(ConnectionResetError):
        while True:
            chunk = conn.recv(65536)
            if not chunk:
                break
            received += chunk
    return received


def closed_by_server(conn: socket.socket) -> bool:
    """True when the server closes ``conn`` (EOF or reset) within HANG_GUARD."""
    conn.settimeout(HANG_GUARD)
    try:
        return conn.recv(1) == b""
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


# ---------------------------------------------------------------- connections (1)

@contextlib.contextmanager
def serve_limited(fake, open_files: int, extra=()):
    """`serve` in a subprocess whose open-file limit is ``open_files`` (soft and hard, so the
    server cannot raise it); yields (url, stderr file)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (open_files, open_files))

    env = {k: v for k, v in os.environ.items() if k not in ("GOOGLE_STT_SERVER_TOKEN", "STT_PW")}
    env["GOOGLE_STT_API_KEY"] = KEY
    log = open(os.devnull if False else f"/tmp/serve-limited-{os.getpid()}-{port}.log", "w+")
    command = [sys.executable, "-m", "ovos_stt_plugin_google_apikey.cli", "serve", "--port", str(port),
               "--endpoint", fake.endpoint, *extra]
    url = f"http://127.0.0.1:{port}"
    with subprocess.Popen(command, env=env, stderr=log, preexec_fn=limit) as process:
        try:
            deadline = time.monotonic() + HANG_GUARD
            while True:
                assert process.poll() is None, "the server exited"
                assert time.monotonic() < deadline, "the server did not come up"
                with contextlib.suppress(requests.ConnectionError):
                    requests.get(f"{url}/", timeout=1)
                    break
                time.sleep(0.05)
            yield url, process, log
        finally:
            process.terminate()
            process.wait(HANG_GUARD)
            log.close()
            os.unlink(log.name)


def test_idle_connections_past_the_file_limit_cannot_lock_a_client_out(fake):
    """400 connections that send nothing, against a server allowed 256 open files: before, the
    server ran out of descriptors (new clients timed out) and logged an accept() traceback per
    attempt. Now the longest-idle connections are closed for new ones and the log stays quiet."""
    with serve_limited(fake, 256) as (url, process, log):
        port = port_of(url)
        idle = []
        try:
            for _ in range(400):
                idle.append(socket.create_connection(("127.0.0.1", port), timeout=HANG_GUARD))
            reply = requests.post(f"{url}/stt", data=SPEECH, timeout=HANG_GUARD)
            still_open = sum(1 for conn in idle if not _closed_now(conn))
        finally:
            for conn in idle:
                conn.close()
        after = requests.post(f"{url}/stt", data=SPEECH, timeout=HANG_GUARD)
        log.flush()
        log.seek(0)
        logged = log.read()
    assert (reply.status_code, reply.text) == (200, HEARD)
    assert (after.status_code, after.text) == (200, HEARD)
    assert still_open <= 256 * 3 // 4          # the cap: 3/4 of the open-file limit
    assert "Traceback" not in logged and len(logged.splitlines()) < 20, logged


def _closed_now(conn: socket.socket) -> bool:
    conn.setblocking(False)
    try:
        return conn.recv(1) == b""
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True
    finally:
        conn.setblocking(True)


def test_a_silent_connection_and_half_a_header_are_closed(engine, fake):
    """Before, uvicorn waited for a header forever (its keep-alive timeout stops at the first
    byte): each such socket held a descriptor for good."""
    with running(create_app(engine)) as url:
        port = port_of(url)
        with socket.create_connection(("127.0.0.1", port)) as silent, \
                socket.create_connection(("127.0.0.1", port)) as half:
            half.sendall(b"POST /stt HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Le")
            assert closed_by_server(silent) and closed_by_server(half)
        reply = requests.post(f"{url}/stt", data=SPEECH, timeout=HANG_GUARD)
    assert (reply.status_code, reply.text) == (200, HEARD)


def test_a_keep_alive_connection_still_serves_a_second_request(engine, fake):
    with running(create_app(engine)) as url, requests.Session() as http:
        replies = [http.post(f"{url}/stt", data=SPEECH, timeout=HANG_GUARD) for _ in range(3)]
    assert [(r.status_code, r.text) for r in replies] == [(200, HEARD)] * 3


# ---------------------------------------------------------------- uploads (4)

@pytest.mark.slow
def test_an_upload_trickling_under_the_minimum_rate_gets_408(engine, fake):
    """100 bytes a second never trips the 5 s idle timeout; before, it held its bytes (and a
    connection) for the whole 60 s body timeout."""
    with running(create_app(engine)) as url:
        with socket.create_connection(("127.0.0.1", port_of(url)), timeout=HANG_GUARD) as conn:
            conn.sendall(b"POST /stt HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100000\r\n\r\n")
            answer = b""
            for _ in range(HANG_GUARD * 2):           # at most 30 s of trickle
                try:
                    conn.sendall(b"\x00" * 50)
                except OSError:
                    break
                ready, _, _ = __import__("select").select([conn], [], [], 0.5)
                if ready:
                    answer = read_all(conn)
                    break
        status = requests.get(f"{url}/status", timeout=HANG_GUARD).json()
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert b"under 4096 bytes a second" in answer
    assert status["buffered"] == 0 and fake.requests == []


def test_a_body_in_one_byte_chunks_is_refused_and_others_are_served(engine, fake):
    """Before, each 1-byte chunk cost the event loop a parser pass (~5 us in h11): one such
    upload raised every other client's latency for up to the 60 s body timeout."""
    with running(create_app(engine)) as url:
        with socket.create_connection(("127.0.0.1", port_of(url)), timeout=HANG_GUARD) as conn:
            conn.sendall(b"POST /stt HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n")
            with contextlib.suppress(OSError):
                for _ in range(20):                    # 20 x 1000 one-byte chunks at most
                    conn.sendall(b"1\r\n\x00\r\n" * 1000)
            answer = read_all(conn)
        normal = requests.post(f"{url}/stt", data=iter([SPEECH[:16000], SPEECH[16000:]]),
                               timeout=HANG_GUARD)        # chunked, in ordinary chunks
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]
    assert b"chunks of under 64 bytes" in answer
    assert (normal.status_code, normal.text) == (200, HEARD)
    assert len(fake.requests) == 1


def test_forwarded_headers_are_believed_only_from_named_proxies(engine):
    """uvicorn believes X-Forwarded-For from 127.0.0.1 by default, where every local client is."""
    assert make_server(create_app(engine), "127.0.0.1", 0).config.proxy_headers is False
    named = make_server(create_app(engine, forwarded_allow_ips=("10.0.0.5",)), "127.0.0.1", 0).config
    assert named.proxy_headers is True and named.forwarded_allow_ips == ["10.0.0.5"]


# ---------------------------------------------------------------- browsers (5)

def raw_post(port: int, headers: bytes, body: bytes = SPEECH, send_body: bool = True) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=HANG_GUARD) as conn:
        conn.sendall(b"POST /stt HTTP/1.1\r\n" + headers + b"Connection: close\r\n"
                     b"Content-Type: text/plain\r\nContent-Length: %d\r\n\r\n" % len(body)
                     + (body if send_body else b""))
        return read_all(conn)


def test_a_foreign_origin_is_refused_before_the_body_and_same_origin_is_served(engine, fake):
    """A page from any site, open in the user's browser, could post audio (a text/plain blob
    needs no CORS preflight) and get it transcribed and billed."""
    with running(create_app(engine)) as url:
        port = port_of(url)
        host = b"Host: 127.0.0.1:%d\r\n" % port
        foreign = raw_post(port, host + b"Origin: https://evil.example\r\n", send_body=False)
        null = raw_post(port, host + b"Origin: null\r\n", send_body=False)
        same = raw_post(port, host + b"Origin: http://127.0.0.1:%d\r\n" % port)     # /docs' Try it out
        none = raw_post(port, host)                                                  # OVOS, curl
    assert foreign.startswith(b"HTTP/1.1 403 ") and b"--allow-origin" in foreign
    assert null.startswith(b"HTTP/1.1 403 ")
    assert same.startswith(b"HTTP/1.1 200 ") and same.endswith(HEARD.encode())
    assert none.startswith(b"HTTP/1.1 200 ")
    assert len(fake.requests) == 2


def test_an_allowed_origin_is_served(engine, fake):
    with running(create_app(engine, allow_origin=("https://app.example",))) as url:
        port = port_of(url)
        allowed = raw_post(port, b"Host: 127.0.0.1:%d\r\nOrigin: https://app.example\r\n" % port)
        other = raw_post(port, b"Host: 127.0.0.1:%d\r\nOrigin: https://evil.example\r\n" % port,
                         send_body=False)
    assert allowed.startswith(b"HTTP/1.1 200 ") and other.startswith(b"HTTP/1.1 403 ")


def test_on_loopback_a_foreign_host_is_refused(engine, fake):
    """DNS rebinding: a page at evil.example whose name now points to 127.0.0.1 sends
    Host: evil.example and could read the transcripts."""
    with running(create_app(engine, allow_host=("stt.lan",))) as url:
        port = port_of(url)
        answers = {name: raw_post(port, b"Host: %s\r\n" % name, send_body=name != b"evil.example:%d" % port)
                   for name in (b"evil.example:%d" % port, b"localhost:%d" % port, b"127.0.0.1",
                                b"[::1]:%d" % port, b"stt.lan:%d" % port)}
        docs = requests.get(f"{url}/docs", headers={"Host": "evil.example"}, timeout=HANG_GUARD)
    assert answers[b"evil.example:%d" % port].startswith(b"HTTP/1.1 403 ")
    assert b"--allow-host" in answers[b"evil.example:%d" % port]
    for name, answer in answers.items():
        if not name.startswith(b"evil"):
            assert answer.startswith(b"HTTP/1.1 200 "), name
    assert docs.status_code == 403
    assert len(fake.requests) == 4


# ---------------------------------------------------------------- signals (7)

def _serve(fake, extra=(), env_extra=None):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k not in ("GOOGLE_STT_SERVER_TOKEN", "STT_PW")}
    env.update({"GOOGLE_STT_API_KEY": KEY, **(env_extra or {})})
    process = subprocess.Popen([sys.executable, "-m", "ovos_stt_plugin_google_apikey.cli", "serve",
                                "--port", str(port), "--endpoint", fake.endpoint, *extra],
                               env=env, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + HANG_GUARD
    while True:
        assert process.poll() is None, process.stderr.read()
        assert time.monotonic() < deadline, "the server did not come up"
        with contextlib.suppress(requests.ConnectionError):
            requests.get(f"{url}/", timeout=1)
            return url, process
        time.sleep(0.05)


def _in_flight(url: str, count: int, pool: ThreadPoolExecutor) -> list:
    futures = [pool.submit(requests.post, f"{url}/stt", data=SPEECH, timeout=HANG_GUARD)
               for _ in range(count)]
    deadline = time.monotonic() + HANG_GUARD
    while requests.get(f"{url}/status", timeout=HANG_GUARD).json()["busy"] < count:
        assert time.monotonic() < deadline, "the requests never got in flight"
        time.sleep(0.02)
    return futures


def test_sighup_and_sigterm_let_requests_in_flight_finish(fake):
    """Before, SIGHUP (a closing SSH session) killed the server at once: in-flight clients cut
    off, their requests already billed, nothing logged."""
    fake.delay = 1.5
    url, process = _serve(fake)
    try:
        with ThreadPoolExecutor(10) as pool:
            hung_up = _in_flight(url, 5, pool)
            process.send_signal(signal.SIGHUP)
            replies = [f.result() for f in hung_up]
            alive = process.poll() is None
            terminated = _in_flight(url, 5, pool)
            process.send_signal(signal.SIGTERM)
            finished = [f.result() for f in terminated]
            code = process.wait(HANG_GUARD)
    finally:
        if process.poll() is None:
            process.kill()
        log = process.stderr.read()
    assert [(r.status_code, r.text) for r in replies] == [(200, HEARD)] * 5 and alive
    assert [(r.status_code, r.text) for r in finished] == [(200, HEARD)] * 5
    # uvicorn re-raises the signal once it has shut down: the exit status says SIGTERM ended it
    assert code in (0, -signal.SIGTERM) and "SIGHUP ignored" in log
    assert len(fake.requests) == 10


# ---------------------------------------------------------------- tokens (8)

@pytest.mark.parametrize("content, why", [("one\ntwo\n", "one line"), ("tökén\n", "printable ASCII"),
                                          ("a token\n", "without spaces"), ("\n", "empty")])
def test_a_token_no_client_can_send_stops_start_up(tmp_path, capsys, content, why):
    (tmp_path / "token").write_text(content, encoding="utf-8")
    assert cli.main(["serve", "--token-file", str(tmp_path / "token")]) == 2
    assert why in capsys.readouterr().err


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs a FIFO")
def test_a_fifo_as_token_file_is_refused_not_waited_on(tmp_path, capsys):
    os.mkfifo(tmp_path / "fifo")
    done = threading.Event()
    result = []

    def start() -> None:
        result.append(cli.main(["serve", "--token-file", str(tmp_path / "fifo")]))
        done.set()

    threading.Thread(target=start, daemon=True).start()
    assert done.wait(HANG_GUARD), "start-up hung on the FIFO"
    assert result == [2] and "not a regular file" in capsys.readouterr().err


def test_the_bearer_scheme_is_case_insensitive(engine, fake):
    with running(create_app(engine, token=TOKEN)) as url:
        replies = [requests.post(f"{url}/stt", data=SPEECH, timeout=HANG_GUARD,
                                 headers={"Authorization": f"{scheme} {TOKEN}"})
                   for scheme in ("Bearer", "bearer", "BEARER", "Basic")]
    assert [r.status_code for r in replies] == [200, 200, 200, 401]


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="reads the process tree from /proc")
def test_workers_get_the_token_read_once(fake, tmp_path):
    """Before, each --processes worker re-read the token file: after a change they disagreed,
    and once the file was emptied a worker that died was replaced by one that could not start
    (and uvicorn's supervisor then stopped the whole server)."""
    from test_server_capacity import _workers_of
    (tmp_path / "token").write_text(TOKEN + "\n")
    url, process = _serve(fake, ["--processes", "2", "--token-file", str(tmp_path / "token")])
    try:
        deadline = time.monotonic() + HANG_GUARD * 2
        while len(_workers_of(process.pid)) < 2:
            assert time.monotonic() < deadline, "two workers did not start"
            time.sleep(0.1)
        (tmp_path / "token").write_text("")           # what a careless edit leaves
        for dead in _workers_of(process.pid):          # both die; the supervisor replaces them
            os.kill(dead, signal.SIGKILL)
            while dead in _workers_of(process.pid) or len(_workers_of(process.pid)) < 2:
                assert process.poll() is None and time.monotonic() < deadline, "no replacement worker"
                time.sleep(0.1)
        replies = []
        while len(replies) < 6 and process.poll() is None and time.monotonic() < deadline:
            with contextlib.suppress(requests.ConnectionError):
                replies.append(requests.post(f"{url}/stt", data=SPEECH, timeout=HANG_GUARD,
                                             headers={"Authorization": f"Bearer {TOKEN}"}))
        alive = process.poll() is None
    finally:
        process.terminate()
        process.wait(HANG_GUARD)
        log = process.stderr.read()
    assert alive and [(r.status_code, r.text) for r in replies] == [(200, HEARD)] * 6, log
    assert TOKEN not in log


# ---------------------------------------------------------------- logs (9)

def test_client_text_reaches_the_log_escaped_and_bounded(engine, fake, caplog):
    """Before, a Content-Type's C1 control characters (a terminal's CSI, \\x9b) went into the
    415 message and the log line as they came."""
    # C1 controls and tab are what an HTTP parser lets through in a header value
    hostile = "text/x\t" + "".join(chr(c) for c in range(0x80, 0xa0)) + "y" * 5000
    with caplog.at_level(logging.INFO), running(create_app(engine)) as url:
        port = port_of(url)
        with socket.create_connection(("127.0.0.1", port), timeout=HANG_GUARD) as conn:
            conn.sendall(b"POST /stt HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                         b"Content-Type: " + hostile.encode("latin-1") + b"\r\n"
                         b"Content-Length: 9\r\n\r\nnot audio")
            answer = read_all(conn)
        logged = [r.getMessage() for r in caplog.records if "status=" in r.getMessage()]
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 415 ")
    text = body.decode("utf-8")
    assert len(logged) == 1
    for line in (text.rstrip("\n"), logged[0]):
        assert not any(c in line for c in C1_AND_C0), repr(line[:200])
        assert len(line) < 1000
    assert fake.requests == []


def test_a_fresh_client_is_served_among_256_from_one_address(engine, fake):
    """All 256 from 127.0.0.1 (README promises them): before, the per-address quarter of
    --max-buffered refused 46-101 of them when their uploads overlapped."""
    clips = [wav(tone(4.0, freq=200 + n)) for n in range(256)]     # 128 KB each, 32 MB at once
    fake.delay = 0.5
    with running(create_app(engine)) as url, ThreadPoolExecutor(256) as pool:
        replies = list(pool.map(lambda clip: requests.post(f"{url}/stt", data=clip, timeout=60), clips))
    refused = {(r.status_code, r.text[:200]) for r in replies if r.status_code != 200}
    assert not refused


# ---------------------------------------------------------------- long audio (6)

def _long(seconds: float, freq: int) -> bytes:
    return tone(seconds, freq=freq)


def test_in_process_waiting_for_a_part_worker_counts_against_the_deadline(fake):
    """Two 150 s recordings at once on one part worker, Google taking 1 s a part, timeout 1.5 s:
    before, the second call's parts waited behind the first's under no deadline and it
    returned long past its timeout; now a part kept waiting past its wave's deadline fails."""
    from ovos_stt_plugin_google_apikey import audio as audio_mod
    from ovos_stt_plugin_google_apikey.errors import DeadlineError
    fake.delay = 1.0
    engine = build_engine(fake, timeout=1.5, max_workers=1)
    outcomes = []
    try:
        with ThreadPoolExecutor(2) as pool:
            calls = [pool.submit(engine.recognizer.recognize,
                                 audio_mod.PCM(_long(150.0, 300 + n), 16000, 2), "en-US") for n in range(2)]
            for call in calls:
                try:
                    outcomes.append(type(call.result(HANG_GUARD)).__name__)
                except DeadlineError:
                    outcomes.append("DeadlineError")
    finally:
        engine.shutdown()
    assert "DeadlineError" in outcomes, outcomes


def test_the_server_sizes_the_part_pool_to_its_workers(fake):
    """The same two recordings through the server (workers 8): its part pool has 8 threads, so
    neither waits and both are transcribed; on the engine's one part worker one would fail."""
    fake.delay = 1.0
    engine = build_engine(fake, timeout=2.5, max_workers=1)
    clips = [wav(_long(110.0, 300 + n)) for n in range(2)]
    try:
        with running(create_app(engine, workers=8)) as url, ThreadPoolExecutor(2) as pool:
            replies = list(pool.map(lambda clip: requests.post(f"{url}/stt", data=clip, timeout=60), clips))
    finally:
        engine.shutdown()
    assert [r.status_code for r in replies] == [200, 200], [r.text for r in replies]
    assert len(fake.requests) == 6               # 3 parts each


def test_accept_errors_are_logged_once_per_interval():
    """asyncio logs 'socket.accept() out of system resource' with a traceback per failed
    accept(): 209 MB in 45 s when descriptors ran out. One line per interval says the same."""
    import logging as logging_mod

    from ovos_stt_plugin_google_apikey.server.serving import AcceptErrorsOnce
    records = []
    logger = logging_mod.getLogger("test-accept-errors")
    logger.propagate = False
    handler = logging_mod.Handler()
    handler.emit = records.append
    logger.addHandler(handler)
    logger.addFilter(AcceptErrorsOnce(interval=3600))
    for _ in range(1000):
        try:
            raise OSError(24, "Too many open files")
        except OSError:
            logger.error("socket.accept() out of system resource", exc_info=True)
    logger.error("something else")
    assert [r.getMessage()[:40] for r in records] == ["socket.accept() out of system resource (",
                                                      "something else"]
    assert records[0].exc_info is None
