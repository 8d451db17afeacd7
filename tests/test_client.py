"""SpeechClient on its own, built from Settings: what it sends, what it returns, and its deadline
over plain HTTP, over real TLS, and through an HTTPS proxy, against endpoints that never finish."""
from __future__ import annotations

import base64
import os
import random
import select
import socket
import ssl
import subprocess
import threading
import time
from typing import List

import pytest
from audio_samples import tone
from fake_google import FakeGoogle, Fault

from ovos_stt_plugin_google_apikey import errors, timeouts
from ovos_stt_plugin_google_apikey.client import API_KEY_HEADER, SpeechClient
from ovos_stt_plugin_google_apikey.settings import Settings

KEY = "test-key"
JOIN = 15.0          # how long a test waits for a call that should end at its 1 s deadline
ONE_MBIT = 1e6 / 8


def body(seconds: float = 0.5) -> dict:
    """A speech:recognize body as Google takes it (the client sends what it is given)."""
    return {"config": {"encoding": "LINEAR16", "sampleRateHertz": 16000, "languageCode": "en-US"},
            "audio": {"content": base64.b64encode(tone(seconds)).decode("ascii")}}


def make_client(endpoint: str, pool_size: int = 4, **config) -> SpeechClient:
    settings = Settings.from_mapping({"key": KEY, "endpoint": endpoint, "retries": 0, "timeout": 1,
                                      **config}, env={})
    return SpeechClient(settings, pool_size=pool_size)


@pytest.fixture
def client(fake):
    client = make_client(fake.endpoint, timeout=5)
    yield client
    client.close()


def transcript(answer: dict) -> str:
    return answer["results"][0]["alternatives"][0]["transcript"]


def in_thread(call, *args):
    """Run ``call`` in a thread; the returned list gets its result or exception."""
    outcome: List[object] = []

    def run() -> None:
        try:
            outcome.append(call(*args))
        except Exception as exc:           # noqa: BLE001 - the type is what the tests check
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def ends_within_join(call, *args):
    """What ``call`` returned or raised; fails the test if it is still running after JOIN s."""
    thread, outcome = in_thread(call, *args)
    thread.join(JOIN)
    assert not thread.is_alive(), "the call did not end at its deadline"
    return outcome[0]


def wait_until(check, seconds: float = 10.0) -> bool:
    end = time.monotonic() + seconds
    while not check() and time.monotonic() < end:
        time.sleep(0.01)
    return check()


# ------------------------------------------------------------------ what it sends and returns

def test_it_posts_the_body_with_the_key_in_a_header_and_returns_googles_json(client, fake):
    answer = client.recognize(body(0.5))
    assert transcript(answer) == "audio 0.50 seconds at 16000 hertz"
    sent = fake.requests[-1]
    assert sent.method == "POST" and sent.path == "/v1/speech:recognize"
    assert sent.headers[API_KEY_HEADER] == KEY and not sent.query
    assert sent.json == body(0.5)


def test_a_built_body_goes_out_in_pieces_under_one_content_length(client, fake):
    """build_recognize_body's base64 (bytes) is sent after the JSON's head without being joined
    to it: one Content-Length for the three pieces, not chunked, the same JSON Google reads;
    a retry sends the same pieces again."""
    from ovos_stt_plugin_google_apikey.wire import build_recognize_body, dump_body
    built = build_recognize_body(tone(0.5), "en-US")
    assert transcript(client.recognize(built)) == "audio 0.50 seconds at 16000 hertz"
    fake.script(Fault.http(503))
    retrying = make_client(fake.endpoint, retries=1, timeout=5)
    try:
        assert transcript(retrying.recognize(built)) == "audio 0.50 seconds at 16000 hertz"
    finally:
        retrying.close()
    assert len(fake.requests) == 3
    for sent in fake.requests:
        assert not sent.chunked and "Transfer-Encoding" not in sent.headers
        assert int(sent.headers["Content-Length"]) == len(sent.body) and sent.body == dump_body(built)
        assert base64.b64decode(sent.json["audio"]["content"]) == tone(0.5)


def test_a_deadline_may_be_a_deadline_or_a_monotonic_instant(client, fake):
    assert transcript(client.recognize(body(), timeouts.Deadline.after(5)))
    assert transcript(client.recognize(body(), time.monotonic() + 5))
    with pytest.raises(errors.DeadlineError):
        client.recognize(body(), timeouts.Deadline.after(-1))      # already past: nothing sent
    assert len(fake.requests) == 2


def test_a_transient_failure_is_retried_within_the_deadline(fake):
    client = make_client(fake.endpoint, retries=2, timeout=5)
    fake.script(Fault.http(503), Fault.drop())
    try:
        assert transcript(client.recognize(body()))
    finally:
        client.close()
    assert len(fake.requests) == 3


def test_the_retry_jitter_leaves_the_hosts_random_state_alone(fake):
    # The backoff's jitter once drew from the global random module: a retry in the
    # background moved OVOS's (or a seeded test's) random state under it, which hypothesis
    # flagged on Python 3.13 ("Do not use the random module inside strategies").
    client = make_client(fake.endpoint, retries=2, timeout=5)
    fake.script(Fault.http(503), Fault.http(500))
    random.seed(7)
    state = random.getstate()
    try:
        assert transcript(client.recognize(body()))
    finally:
        client.close()
    assert len(fake.requests) == 3                 # two backoffs were drawn
    assert random.getstate() == state


def test_a_redirect_is_not_followed(client, fake):
    with FakeGoogle() as elsewhere:
        fake.script(Fault.redirect(307, elsewhere.url))
        with pytest.raises(errors.UnavailableError, match="redirects are not followed"):
            client.recognize(body())
        assert elsewhere.requests == []


def test_after_close_it_raises_closed_error(fake):
    client = make_client(fake.endpoint)
    client.close()
    with pytest.raises(errors.ClosedError):
        client.recognize(body())
    assert fake.requests == []


# ------------------------------------------------------------------ the deadline over plain HTTP

def test_a_hung_answer_ends_at_the_deadline(fake):
    client = make_client(fake.endpoint)
    fake.script(Fault.hang(30))
    try:
        error = ends_within_join(client.recognize, body())
    finally:
        client.close()
    assert isinstance(error, errors.DeadlineError), error
    assert "within the 1 s timeout" in str(error)


def test_a_trickled_answer_ends_at_the_deadline(fake):
    # One byte at a time over 30 s: every read succeeds, only the deadline stops it.
    client = make_client(fake.endpoint)
    fake.script(Fault.trickle(30))
    try:
        error = ends_within_join(client.recognize, body())
    finally:
        client.close()
    assert isinstance(error, errors.DeadlineError), error


def test_an_upload_that_keeps_moving_is_not_cut_and_the_answer_deadline_follows_it():
    # ~4 s of upload at 1 Mbit/s against a 1 s timeout: the upload is waited for; then a 30 s
    # hang is cut by the 1 s that starts once the upload is acknowledged.
    with FakeGoogle(valid_keys=(KEY,), read_rate_bps=ONE_MBIT) as fake:
        client = make_client(fake.endpoint)
        try:
            assert transcript(client.recognize(body(12.0))) == "audio 12.00 seconds at 16000 hertz"
            fake.script(Fault.hang(30))
            error = ends_within_join(client.recognize, body(6.0))
        finally:
            client.close()
    assert isinstance(error, errors.DeadlineError) and "within the 1 s timeout" in str(error), error
    assert len(fake.requests) == 2 and len(fake.requests[1].body) / ONE_MBIT > 1.5


def test_waiting_for_a_pooled_connection_ends_at_the_deadline(fake):
    client = make_client(fake.endpoint, pool_size=1)
    fake.script(Fault.delay(4))
    holder, held = in_thread(client.recognize, body(), time.monotonic() + 10)
    try:
        assert wait_until(lambda: fake.requests)       # the one connection is held
        error = ends_within_join(client.recognize, body())
        holder.join(JOIN)
    finally:
        client.close()
    assert isinstance(error, errors.DeadlineError), error
    assert isinstance(held[0], dict) and transcript(held[0])       # the holder was not disturbed
    assert fake.connections == 1 and len(fake.requests) == 1       # the waiter sent nothing


def test_warm_leaves_nothing_a_later_deadline_could_cut_another_request_with(fake):
    # This thread warms the one pooled connection, another request then takes that connection
    # and waits 2.5 s for its answer, and this thread's next request waits for the pool until
    # its 1 s deadline. Its deadline must cut nothing but itself. (e07c3d3: warm() left this
    # thread's entry in a registry keyed by thread id, pointing at the connection, so the
    # deadline shut down the other request's connection: UnavailableError for it.)
    client = make_client(fake.endpoint, pool_size=1)
    try:
        client.warm()
        assert [r.method for r in fake.requests] == ["HEAD"]
        fake.script(Fault.delay(2.5))
        other, answered = in_thread(client.recognize, body(), time.monotonic() + 10)
        assert wait_until(lambda: len(fake.requests) == 2)
        with pytest.raises(errors.DeadlineError):
            client.recognize(body())
        other.join(JOIN)
    finally:
        client.close()
    assert isinstance(answered[0], dict), answered
    assert transcript(answered[0]) == "audio 0.50 seconds at 16000 hertz"
    assert fake.connections == 1


# ------------------------------------------------------------------ real TLS on loopback

def _certificate(directory: str) -> tuple:
    """A self-signed certificate for 127.0.0.1 (its own CA), made now: (cert path, key path)."""
    cert, key = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
    try:
        import datetime
        import ipaddress

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
    except ImportError:
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                        "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1", "-keyout", key, "-out", cert,
                        "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
        return cert, key
    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(private.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                       critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(private, hashes.SHA256()))
    with open(cert, "wb") as out:
        out.write(certificate.public_bytes(serialization.Encoding.PEM))
    with open(key, "wb") as out:
        out.write(private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption()))
    return cert, key


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    cert, key = _certificate(str(tmp_path_factory.mktemp("tls")))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return cert, context


class _TLSServer:
    """A TLS listener on 127.0.0.1 serving each connection in a thread until ``close()``."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self.context = context
        self.stop = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self.served = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                raw, _ = self.listener.accept()
            except OSError:             # the accept timeout, or close()
                continue
            threading.Thread(target=self._serve, args=(raw,), daemon=True).start()

    def _serve(self, raw: socket.socket) -> None:
        try:
            raw.settimeout(10)
            with self.context.wrap_socket(raw, server_side=True) as conn:
                self.served += 1
                self.handle(conn)
        except (OSError, ValueError):   # the client went away: the point of these servers
            pass

    def handle(self, conn: ssl.SSLSocket) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self.stop.set()
        self.listener.close()


def _read_request(conn: ssl.SSLSocket) -> bytes:
    """Headers and a Content-Length body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            raise OSError("closed mid-request")
        data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    while len(rest) < length:
        chunk = conn.recv(65536)
        if not chunk:
            raise OSError("closed mid-body")
        rest += chunk
    return head


class TrickleEndpoint(_TLSServer):
    """An HTTPS endpoint answering 200 promising a megabyte, then a byte every 0.5 s forever."""

    def handle(self, conn: ssl.SSLSocket) -> None:
        _read_request(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n{")
        while not self.stop.wait(0.5):
            conn.sendall(b" ")


class AnsweringEndpoint(_TLSServer):
    """An HTTPS endpoint giving every request the same small recognize answer."""

    ANSWER = b'{"results": [{"alternatives": [{"transcript": "over tls"}]}]}'

    def handle(self, conn: ssl.SSLSocket) -> None:
        while True:
            _read_request(conn)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                         % (len(self.ANSWER), self.ANSWER))


class ConnectProxy(_TLSServer):
    """An https:// proxy: CONNECT over TLS, then bytes both ways. Records the targets asked for."""

    def __init__(self, context: ssl.SSLContext) -> None:
        super().__init__(context)
        self.targets: List[str] = []

    def handle(self, conn: ssl.SSLSocket) -> None:
        request = b""
        while b"\r\n\r\n" not in request:
            chunk = conn.recv(4096)
            if not chunk:
                return
            request += chunk
        method, target = request.split(b" ")[:2]
        assert method == b"CONNECT"
        self.targets.append(target.decode())
        host, port = target.decode().rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=10) as upstream:
            conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            self._pump(conn, upstream)

    def _pump(self, conn: ssl.SSLSocket, upstream: socket.socket) -> None:
        # One thread: an SSL socket is not to be read and written from two threads at once.
        while not self.stop.is_set():
            ready = [conn] if conn.pending() else select.select([conn, upstream], [], [], 0.2)[0]
            for sock in ready:
                data = sock.recv(65536)
                if not data:
                    return
                (upstream if sock is conn else conn).sendall(data)


@pytest.fixture
def https_env(tls, monkeypatch):
    """The test CA trusted (read by SpeechClient as users set it: REQUESTS_CA_BUNDLE), no proxy."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", tls[0])
    for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.fixture
def proxy(tls, https_env):
    proxy = ConnectProxy(tls[1])
    https_env.setenv("HTTPS_PROXY", f"https://127.0.0.1:{proxy.port}")
    yield proxy
    proxy.close()


@pytest.fixture
def trickle(tls):
    server = TrickleEndpoint(tls[1])
    yield server
    server.close()


@pytest.fixture
def answering(tls):
    server = AnsweringEndpoint(tls[1])
    yield server
    server.close()


def test_over_tls_the_answer_arrives(answering, https_env):
    client = make_client(f"https://127.0.0.1:{answering.port}")
    try:
        assert transcript(client.recognize(body())) == "over tls"
    finally:
        client.close()


def test_over_tls_a_trickled_answer_ends_at_the_deadline(trickle, https_env):
    client = make_client(f"https://127.0.0.1:{trickle.port}")
    try:
        error = ends_within_join(client.recognize, body())
    finally:
        client.close()
    assert isinstance(error, errors.DeadlineError), error
    assert trickle.served == 1


def test_through_an_https_proxy_the_answer_arrives(answering, proxy):
    client = make_client(f"https://127.0.0.1:{answering.port}")
    try:
        assert transcript(client.recognize(body())) == "over tls"
    finally:
        client.close()
    assert proxy.targets == [f"127.0.0.1:{answering.port}"]


def test_through_an_https_proxy_a_trickled_answer_ends_at_the_deadline(trickle, proxy):
    # TLS inside TLS: urllib3 reads through an SSLTransport, which has no shutdown(). The deadline
    # shuts down the socket under it. (e07c3d3: the alarm thread died of AttributeError and the
    # call ran until the endpoint stopped trickling.)
    client = make_client(f"https://127.0.0.1:{trickle.port}")
    try:
        first = ends_within_join(client.recognize, body())
        second = ends_within_join(client.recognize, body())       # the alarms still work
    finally:
        client.close()
    assert isinstance(first, errors.DeadlineError), first
    assert isinstance(second, errors.DeadlineError), second
    assert proxy.targets == [f"127.0.0.1:{trickle.port}"] * 2


def test_a_streamed_upload_through_an_https_proxy_ends_at_the_deadline(trickle, proxy):
    client = make_client(f"https://127.0.0.1:{trickle.port}")
    try:
        error = ends_within_join(client.recognize_streaming, iter([b'{"config": {}, ', b'"audio": {}}']))
    finally:
        client.close()
    assert isinstance(error, errors.DeadlineError), error
