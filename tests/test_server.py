"""The companion HTTP server, through the ASGI app in-process and a real uvicorn on port 0."""
from __future__ import annotations

import base64
import contextlib
import io
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from audio_samples import silence, tone, wav
from conftest import build_plugin
from fake_google import Fault
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ovos_stt_plugin_google_apikey.plugin import GoogleAPIKeySTT
from ovos_stt_plugin_google_apikey.server import create_app, make_server
from ovos_stt_plugin_google_apikey.version import __version__

with warnings.catch_warnings():
    # Starlette >= 1.x asks for httpx2 and warns when the TestClient falls back to httpx.
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from conftest import KEY  # noqa: E402  (one source for the fake key)

TOKEN = "s3cret-token-for-tests"
SERVER_LOG = "ovos_stt_plugin_google_apikey.server"   # in the name of OVOS LOG's logger
SPEECH = wav(tone(1.0))                  # a tone stands in for speech
HEARD = "audio 1.00 seconds at 16000 hertz"


def build_engine(fake, **settings):
    return build_plugin(fake.endpoint, **settings)


@pytest.fixture
def client(engine):
    with TestClient(create_app(engine)) as client:
        yield client


def sent_config(fake):
    return fake.requests[-1].json["config"]


def flac(pcm: bytes, rate: int) -> bytes:
    soundfile = pytest.importorskip("soundfile")           # the [flac] extra
    np = pytest.importorskip("numpy")
    buffer = io.BytesIO()
    soundfile.write(buffer, np.frombuffer(pcm, dtype="<i2"), rate, format="FLAC")
    return buffer.getvalue()


# ---------------------------------------------------------------- /stt, in-process

def test_wav_body_answers_the_transcript_as_plain_text(client, fake):
    reply = client.post("/stt", params={"lang": "en-US"}, content=SPEECH,
                        headers={"Content-Type": "audio/wav"})
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "text/plain; charset=utf-8"
    assert reply.text == HEARD
    assert len(fake.requests) == 1


@pytest.mark.parametrize("given, google", [("en-us", "en-US"), ("pt-br", "pt-BR"),
                                           ("zh-CN", "cmn-Hans-CN"), ("he", "iw-IL")])
def test_language_reaches_google_in_its_form(client, fake, given, google):
    # The released launcher lower-cases lang; Google wants its own spelling.
    assert client.post("/stt", params={"lang": given}, content=SPEECH).status_code == 200
    assert sent_config(fake)["languageCode"] == google


def test_without_lang_the_server_default_then_the_plugin_default(engine, fake):
    with TestClient(create_app(engine, default_lang="pt-PT")) as client:
        assert client.post("/stt", content=SPEECH).status_code == 200
    assert sent_config(fake)["languageCode"] == "pt-PT"
    with TestClient(create_app(engine)) as client:
        assert client.post("/stt", content=SPEECH).status_code == 200
    assert sent_config(fake)["languageCode"] == "en-US"


def test_no_speech_is_200_with_an_empty_body(client, fake):
    reply = client.post("/stt", content=wav(silence(1.0)))
    assert (reply.status_code, reply.text) == (200, "")
    assert len(fake.requests) == 1            # Google was asked, and heard nothing


def test_wav_44k_stereo_keeps_its_rate(client, fake):
    reply = client.post("/stt", content=wav(tone(0.5, 44100, 2, 2), 44100, 2, 2))
    assert reply.text == "audio 0.50 seconds at 44100 hertz"
    assert sent_config(fake)["sampleRateHertz"] == 44100


def test_raw_pcm_with_sample_rate_reaches_google_at_that_rate(client, fake):
    reply = client.post("/stt", params={"sample_rate": 8000, "sample_width": 2},
                        content=tone(1.0, 8000))
    assert reply.text == "audio 1.00 seconds at 8000 hertz"
    assert sent_config(fake)["sampleRateHertz"] == 8000


@pytest.mark.parametrize("given, answered", [("he-IL", "he-IL"), ("iw-IL", "he-IL"), ("zh-CN", "zh-CN")])
def test_stt_json_answers_the_language_in_its_standard_tag(client, fake, given, answered):
    # Google is sent its legacy tag (iw-IL, cmn-Hans-CN); the caller gets the standard one back.
    reply = client.post("/stt/json", json={"audio_b64": base64.b64encode(SPEECH).decode(), "lang": given})
    assert reply.json() == {"text": HEARD, "lang": answered}
    assert sent_config(fake)["languageCode"] != answered


def test_raw_pcm_without_parameters_is_16k_16bit(client):
    assert client.post("/stt", content=tone(0.5)).text == "audio 0.50 seconds at 16000 hertz"


def test_raw_8bit_pcm(client):
    reply = client.post("/stt", params={"sample_width": 1}, content=tone(0.5, 16000, 1))
    assert reply.text == "audio 0.50 seconds at 16000 hertz"


def test_flac_body(client):
    reply = client.post("/stt", content=flac(tone(0.5, 22050), 22050))
    assert (reply.status_code, reply.text) == (200, "audio 0.50 seconds at 22050 hertz")


def test_multipart_upload_with_lang_field(client, fake):
    reply = client.post("/stt", files={"audio": ("x.wav", SPEECH, "audio/wav")},
                        data={"lang": "pt-br"})
    assert (reply.status_code, reply.text) == (200, HEARD)
    assert sent_config(fake)["languageCode"] == "pt-BR"


@pytest.mark.parametrize("files, data", [
    ({"sound": ("x.wav", SPEECH, "audio/wav")}, {}),               # wrong field name
    ({"other": ("y.txt", b"x", "text/plain")}, {"audio": "x.wav"}),  # text, not a file
])
def test_multipart_without_an_audio_file_is_400(client, fake, files, data):
    reply = client.post("/stt", files=files, data=data)
    assert reply.status_code == 400
    assert "'audio'" in reply.text
    assert fake.requests == []


@pytest.mark.parametrize("query, body, says", [
    ({"lang": "x" * 50}, SPEECH, "lang"),
    ({"lang": "en US; rm -rf"}, SPEECH, "lang"),
    ({"sample_rate": "abc"}, SPEECH, "sample_rate"),
    ({"sample_rate": "\u00b2"}, SPEECH, "sample_rate"),          # isdigit(), yet not a number
    ({"sample_rate": "100"}, tone(0.5), "100 Hz"),
    ({"sample_width": "7"}, tone(0.5), "sample width"),
    ({}, b"", "no audio"),
    ({}, b"RIFF1234", "WAV"),
    ({}, b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00" + bytes(16), "WAV"),
    ({}, b"RIFF\x10\x00\x00\x00WAVEjunkjunk", "WAV"),
    ({}, b"fLaC" + b"\x00" * 64, "FLAC"),
])
def test_bad_requests_are_400_with_the_reason(client, fake, query, body, says):
    reply = client.post("/stt", params=query, content=body)
    assert reply.status_code == 400
    assert reply.headers["content-type"].startswith("text/plain")
    assert says in reply.text and reply.text.count("\n") == 1
    assert fake.requests == []


query_values = st.one_of(st.none(), st.text(max_size=12), st.integers(-10, 10 ** 6).map(str))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(prefix=st.sampled_from([b"", b"fLaC", b"OggS"]), body=st.binary(max_size=600),
       lang=query_values, rate=query_values, width=query_values)
def test_any_request_gets_an_answer_never_a_500(client, prefix, body, lang, rate, width):
    params = {k: v for k, v in {"lang": lang, "sample_rate": rate, "sample_width": width}.items()
              if v is not None}
    reply = client.post("/stt", params=params, content=prefix + body)
    assert reply.status_code in (200, 400, 415, 502), reply.text  # 415: not audio; 502: Google refused the tag
    assert reply.status_code == 200 or reply.text.strip()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payload=st.dictionaries(st.sampled_from(["audio_b64", "lang", "sample_rate", "sample_width"]),
                               st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=20),
                                         st.binary(max_size=64).map(
                                             lambda b: base64.b64encode(b).decode()))))
def test_any_json_body_gets_a_json_answer_never_a_500(client, payload):
    reply = client.post("/stt/json", json=payload)
    assert reply.status_code in (200, 400, 415, 502), reply.text
    assert set(reply.json()) == ({"text", "lang"} if reply.status_code == 200 else {"error"})


def test_lang_that_is_not_utf8_is_400(client, fake):
    reply = client.post("/stt?lang=%FF%FEen", content=SPEECH)
    assert reply.status_code == 400 and "lang" in reply.text
    assert fake.requests == []


def test_body_over_max_body_by_content_length_is_413(engine, fake):
    with TestClient(create_app(engine, max_body=1000)) as client:
        reply = client.post("/stt", content=wav(tone(0.1)))
        assert client.post("/stt", content=tone(0.01)).status_code == 200   # 320 bytes fit
    assert reply.status_code == 413 and "1000" in reply.text
    assert len(fake.requests) == 1


# ---------------------------------------------------------------- Google's failures

@pytest.mark.parametrize("fault, status, retry_after, says", [
    (Fault.http(503), 503, None, "UNAVAILABLE"),
    (Fault.http(503, retry_after=2), 503, "2", "UNAVAILABLE"),
    (Fault.http(429, retry_after=7), 503, "7", "Quota exceeded"),
    (Fault.html(), 503, None, "not JSON"),
    (Fault.http(400, message="Invalid recognition 'config': bad encoding."), 502, None, "bad encoding"),
])
def test_google_failures_map_to_status_codes(client, fake, fault, status, retry_after, says):
    fake.script(fault)
    reply = client.post("/stt", content=SPEECH)
    assert reply.status_code == status
    assert reply.headers.get("retry-after") == retry_after
    assert says in reply.text and reply.text.strip()


@pytest.mark.parametrize("kind, reason", [("invalid", "API_KEY_INVALID"),
                                          ("disabled", "SERVICE_DISABLED"),
                                          ("restricted", "API_KEY_SERVICE_BLOCKED")])
def test_key_refused_by_google_is_502_with_googles_reason(client, fake, kind, reason):
    fake.key_errors[KEY] = kind
    reply = client.post("/stt", content=SPEECH)
    assert reply.status_code == 502 and reason in reply.text


def test_google_too_slow_is_504(fake):
    engine = build_engine(fake, timeout=0.5)
    fake.script(Fault.hang(3))
    started = time.monotonic()
    with TestClient(create_app(engine)) as client:
        reply = client.post("/stt", content=SPEECH)
    engine.shutdown()
    assert reply.status_code == 504 and "timeout" in reply.text
    assert time.monotonic() - started < 2.5


class Broken(GoogleAPIKeySTT):
    def recognize(self, audio, lang=None, progress=None):
        raise RuntimeError("boom: an unexpected bug")

    def detect_language(self, audio, valid_langs=None):
        raise NotImplementedError("Broken does not detect languages")


def test_unexpected_error_is_500_without_a_traceback_but_logged(fake, caplog):
    engine = Broken({"key": KEY, "endpoint": fake.endpoint})
    with TestClient(create_app(engine)) as client, caplog.at_level(logging.INFO):
        reply = client.post("/stt", content=SPEECH)
    assert (reply.status_code, reply.text) == (500, "internal error\n")
    logged = [r for r in caplog.records if r.exc_info]
    assert logged and "boom" in str(logged[0].exc_info[1])


def test_language_detection_missing_is_501(fake):
    engine = Broken({"key": KEY, "endpoint": fake.endpoint})
    with TestClient(create_app(engine)) as client:
        reply = client.post("/lang_detect", params={"valid_langs": "en-US,pt-PT"}, content=SPEECH)
    assert reply.status_code == 501
    assert "does not detect" in reply.json()["error"]


# ---------------------------------------------------------------- /stt/json, /lang_detect

def test_stt_json_with_wav_and_with_raw_pcm(client, fake):
    reply = client.post("/stt/json", json={"audio_b64": base64.b64encode(SPEECH).decode(),
                                           "lang": "pt-br"})
    assert reply.status_code == 200
    assert reply.json() == {"text": HEARD, "lang": "pt-BR"}
    raw = {"audio_b64": base64.b64encode(tone(1.0, 8000)).decode(), "sample_rate": 8000,
           "sample_width": 2}
    assert client.post("/stt/json", json=raw).json()["text"] == "audio 1.00 seconds at 8000 hertz"
    assert sent_config(fake)["sampleRateHertz"] == 8000


@pytest.mark.parametrize("body, says", [
    (b"not json", "JSON"),
    (b"\xff\xfe{}", "JSON"),
    (b"[" * 100_000, "JSON"),
    (json.dumps({"lang": "en-US"}).encode(), "audio_b64"),
    (json.dumps({"audio_b64": "***not base64***"}).encode(), "base64"),
    (json.dumps({"audio_b64": base64.b64encode(tone(0.1)).decode(), "sample_rate": "fast"}).encode(),
     "sample_rate"),
])
def test_stt_json_bad_bodies_are_400_json_errors(client, fake, body, says):
    reply = client.post("/stt/json", content=body, headers={"Content-Type": "application/json"})
    assert reply.status_code == 400
    assert says in reply.json()["error"]
    assert fake.requests == []


def test_stt_json_google_failure_is_a_json_error(client, fake):
    fake.script(Fault.http(429, retry_after=3))
    reply = client.post("/stt/json", json={"audio_b64": base64.b64encode(SPEECH).decode()})
    assert reply.status_code == 503 and reply.headers["retry-after"] == "3"
    assert "Quota" in reply.json()["error"]


def test_lang_detect_asks_google_with_the_candidates(client, fake):
    reply = client.post("/lang_detect", params={"valid_langs": "en-US,pt-PT"}, content=SPEECH)
    assert reply.status_code == 200
    answer = reply.json()
    assert answer["lang"] in ("en-US", "pt-PT") and 0.0 <= answer["conf"] <= 1.0
    config = sent_config(fake)
    assert {config["languageCode"], *config["alternativeLanguageCodes"]} == {"en-US", "pt-PT"}


def test_lang_detect_with_one_candidate_answers_without_google(client, fake):
    reply = client.post("/lang_detect", params={"valid_langs": "pt-PT"}, content=SPEECH)
    assert reply.json() == {"lang": "pt-PT", "conf": 1.0}
    assert fake.requests == []


def test_lang_detect_needs_valid_langs(client, fake):
    reply = client.post("/lang_detect", content=SPEECH)
    assert reply.status_code == 400
    assert "valid_langs is required" in reply.json()["error"]
    assert fake.requests == []


# ---------------------------------------------------------------- token, no key, status

def test_token_is_checked_before_anything_reaches_google(engine, fake):
    with TestClient(create_app(engine, token=TOKEN)) as client:
        missing = client.post("/stt", content=SPEECH)
        wrong = client.post("/stt", content=SPEECH, headers={"Authorization": "Bearer nope"})
        wrong_json = client.post("/stt/json", json={"audio_b64": ""},
                                 headers={"Authorization": TOKEN})      # no "Bearer "
        assert fake.requests == []
        right = client.post("/stt", content=SPEECH, headers={"Authorization": f"Bearer {TOKEN}"})
        status = client.get("/status")
    assert missing.status_code == wrong.status_code == wrong_json.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    assert "error" in wrong_json.json()
    assert (right.status_code, right.text) == (200, HEARD)
    assert status.status_code == 200 and TOKEN not in status.text


def test_without_a_key_stt_routes_are_503_and_status_says_so(fake):
    with TestClient(create_app(None)) as client:
        plain = client.post("/stt", content=SPEECH)
        as_json = client.post("/stt/json", json={"audio_b64": ""})
        detect = client.post("/lang_detect", params={"valid_langs": "en-US,pt-PT"}, content=SPEECH)
        status = client.get("/status").json()
    assert plain.status_code == as_json.status_code == detect.status_code == 503
    assert plain.text.strip() == "no Google API key configured: set GOOGLE_STT_API_KEY"
    assert "GOOGLE_STT_API_KEY" in as_json.json()["error"]
    assert status["key_configured"] is False and status["status"] == "ok"


def test_status_and_root(client):
    status = client.get("/status").json()
    totals = status.pop("totals")             # test_metrics.py checks what they count
    assert status == {"status": "ok", "plugin": "ovos-stt-plugin-google-apikey",
                      "lang_plugin": None, "gradio": False, "key_configured": True,
                      "version": __version__, "busy": 0, "capacity": 320, "buffered": 0}
    assert set(totals) == {"since", "requests", "audio_seconds", "billed_seconds"}
    root = client.get("/")
    assert (root.status_code, root.text) == (200, "ok")
    assert root.headers["content-type"].startswith("text/plain")
    assert client.get("/stt").status_code == 405


def test_one_log_line_per_request(client, caplog):
    with caplog.at_level(logging.INFO):
        client.post("/stt", params={"lang": "pt-br"}, content=SPEECH)
        client.post("/stt", params={"sample_rate": "abc"}, content=SPEECH)
    lines = [r.getMessage() for r in caplog.records if SERVER_LOG in r.name]
    assert len(lines) == 2
    assert "POST /stt" in lines[0] and "audio=1.00s" in lines[0] and "lang=pt-BR" in lines[0]
    assert "status=200" in lines[0] and "ms" in lines[0]
    assert "status=400" in lines[1] and "sample_rate" in lines[1]


def test_the_key_and_token_appear_in_no_answer_and_no_log(fake, caplog):
    marker = "AIzaSyMARKER-do-not-leak-0123456789"
    fake.valid_keys = {marker}
    engine = build_engine(fake, key=marker)
    seen = []
    with caplog.at_level(logging.DEBUG), TestClient(create_app(engine, token=TOKEN)) as client:
        auth = {"Authorization": f"Bearer {TOKEN}"}
        seen.append(client.post("/stt", content=SPEECH, headers=auth))
        seen.append(client.post("/stt", content=SPEECH, headers={"Authorization": "Bearer x"}))
        seen.append(client.post("/stt", params={"lang": "!!"}, content=SPEECH, headers=auth))
        fake.key_errors[marker] = "invalid"
        seen.append(client.post("/stt", content=SPEECH, headers=auth))
        seen.append(client.post("/stt/json", json={"audio_b64": base64.b64encode(SPEECH).decode()},
                                headers=auth))
        del fake.key_errors[marker]
        fake.script(Fault.http(500), Fault.http(429))
        seen.append(client.post("/stt", content=SPEECH, headers=auth))
        seen.append(client.post("/lang_detect", params={"valid_langs": "en-US,de-DE"},
                                content=SPEECH, headers=auth))
        seen.append(client.get("/status"))
    engine.shutdown()
    assert [r.status_code for r in seen] == [200, 401, 400, 502, 502, 503, 503, 200]
    assert fake.requests[0].headers["X-Goog-Api-Key"] == marker      # it was really used
    for reply in seen:
        assert marker not in reply.text and TOKEN not in reply.text
        assert all(marker not in v and TOKEN not in v for v in reply.headers.values())
    assert caplog.records and marker not in caplog.text and TOKEN not in caplog.text


# ---------------------------------------------------------------- a real uvicorn

@contextlib.contextmanager
def running(app):
    """The app on a real uvicorn at 127.0.0.1:<free port>; yields the base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = make_server(app, "127.0.0.1", 0)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(5)
        sock.close()


def test_real_multipart_upload_and_the_ovos_client_request(engine, fake):
    with running(create_app(engine)) as url:
        # What `curl -F audio=@x.wav -F lang=en-US http://127.0.0.1:9090/stt` sends.
        form = requests.post(f"{url}/stt", files={"audio": ("x.wav", SPEECH, "audio/wav")},
                             data={"lang": "de-de"}, timeout=10)
        # What the released ovos-stt-plugin-server client sends.
        ovos = requests.post(f"{url}/stt", data=SPEECH, params={"lang": "en-us"},
                             headers={"Content-Type": "audio/wav"}, timeout=5)
    assert (form.status_code, form.text) == (200, HEARD)
    assert fake.requests[0].json["config"]["languageCode"] == "de-DE"
    assert (ovos.status_code, ovos.text) == (200, HEARD)
    assert fake.requests[1].json["config"]["languageCode"] == "en-US"


def test_twenty_parallel_requests_all_succeed_in_parallel(engine, fake):
    fake.delay = 0.2
    with running(create_app(engine)) as url, ThreadPoolExecutor(20) as pool:
        started = time.monotonic()
        replies = list(pool.map(lambda n: requests.post(f"{url}/stt", data=wav(tone(0.5 + n / 100)),
                                                        timeout=10), range(20)))
        elapsed = time.monotonic() - started
    assert [r.status_code for r in replies] == [200] * 20
    assert [r.text for r in replies] == [f"audio {0.5 + n / 100:.2f} seconds at 16000 hertz"
                                         for n in range(20)]
    assert elapsed < 2.0          # all at once: one round of 0.2 s, not twenty


def test_overload_is_refused_at_once_with_retry_after_and_nothing_is_lost(engine, fake):
    fake.delay = 0.6
    app = create_app(engine, workers=1, queue=1)

    def post(_):
        started = time.monotonic()
        reply = requests.post(f"{url}/stt", data=SPEECH, timeout=10)
        return reply, time.monotonic() - started

    with running(app) as url, ThreadPoolExecutor(6) as pool:
        results = list(pool.map(post, range(6)))
        status = requests.get(f"{url}/status", timeout=5).json()
    codes = sorted(reply.status_code for reply, _ in results)
    assert set(codes) <= {200, 503} and len(codes) == 6
    assert codes.count(200) >= 2 and 503 in codes
    for reply, took in results:
        if reply.status_code == 200:
            assert reply.text == HEARD
        else:
            assert reply.headers["retry-after"] == "1" and "busy" in reply.text
            assert took < 0.5                     # refused at once, not after waiting
    assert len(fake.requests) == codes.count(200)
    assert (status["busy"], status["capacity"]) == (0, 2)


def test_chunked_upload_past_max_body_is_cut_off_with_413(engine, fake):
    limit = 64 * 1024
    with running(create_app(engine, max_body=limit)) as url:
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
            conn.sendall(b"POST /stt HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: audio/wav\r\n"
                         b"Transfer-Encoding: chunked\r\n\r\n")
            chunk = b"\x01\x02" * 8192
            for _ in range(5):                     # 80 KiB, and the body never ends
                conn.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            answer = conn.recv(65536)
            assert answer.startswith(b"HTTP/1.1 413 ")
            assert b"connection: close" in answer.lower()
            # The server stopped reading: the rest of a 100 MB upload cannot be sent.
            with pytest.raises(OSError):
                for _ in range(100 * 1024 * 1024 // len(chunk)):
                    conn.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
    assert fake.requests == []


def test_content_length_past_max_body_is_refused_before_the_body(engine, fake):
    with running(create_app(engine, max_body=1000)) as url:
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
            conn.sendall(b"POST /stt HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 500000000\r\n\r\n")
            answer = conn.recv(65536)               # no body was sent at all
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert fake.requests == []


def test_listening_beyond_loopback_without_a_token_warns(engine, caplog):
    with caplog.at_level(logging.WARNING):
        make_server(create_app(engine), "0.0.0.0", 9090)
        make_server(create_app(engine, token=TOKEN), "0.0.0.0", 9090)
        make_server(create_app(engine), "127.0.0.1", 9090)
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and SERVER_LOG in r.name]
    assert len(warned) == 1 and "0.0.0.0" in warned[0] and "token" in warned[0]


# ---------------------------------------------------------------- the serve command

@contextlib.contextmanager
def serve_command(args, env):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "ovos_stt_plugin_google_apikey.cli", "serve",
               "--port", str(port), *args]
    environ = {k: v for k, v in os.environ.items()
               if k not in ("GOOGLE_STT_API_KEY", "STT_PW", "GOOGLE_STT_SERVER_TOKEN")}
    url = f"http://127.0.0.1:{port}"
    with subprocess.Popen(command, env={**environ, **env}, stderr=subprocess.PIPE,
                          text=True) as process:
        try:
            deadline = time.monotonic() + 30
            while True:
                assert process.poll() is None, process.stderr.read()
                assert time.monotonic() < deadline, "the server did not come up"
                with contextlib.suppress(requests.ConnectionError):
                    requests.get(f"{url}/", timeout=1)
                    break
                time.sleep(0.05)
            yield url, process
        finally:
            process.terminate()


def test_serve_command_with_key_from_env_token_file_and_endpoint(fake, tmp_path):
    (tmp_path / "token").write_text(TOKEN + "\n")
    (tmp_path / "conf.json").write_text(json.dumps({"lang": "en-US", "retries": 0}))
    args = ["--endpoint", fake.endpoint, "--token-file", str(tmp_path / "token"),
            "--config", str(tmp_path / "conf.json"), "--lang", "pt-PT"]
    with serve_command(args, {"GOOGLE_STT_API_KEY": KEY}) as (url, process):
        refused = requests.post(f"{url}/stt", data=SPEECH, timeout=5)
        heard = requests.post(f"{url}/stt", data=SPEECH, timeout=5,
                              headers={"Authorization": f"Bearer {TOKEN}"})
        process.terminate()
        log = process.stderr.read()
    assert refused.status_code == 401
    assert (heard.status_code, heard.text) == (200, HEARD)
    assert fake.requests[0].json["config"]["languageCode"] == "pt-PT"
    assert "POST /stt" in log and "status=200" in log
    assert KEY not in log and TOKEN not in log


def test_serve_command_without_a_key_still_serves_503(tmp_path):
    (tmp_path / "conf.json").write_text("{}")
    with serve_command(["--config", str(tmp_path / "conf.json")], {}) as (url, process):
        status = requests.get(f"{url}/status", timeout=5).json()
        reply = requests.post(f"{url}/stt", data=SPEECH, timeout=5)
        process.terminate()
        log = process.stderr.read()
    assert status["key_configured"] is False
    assert reply.status_code == 503 and "GOOGLE_STT_API_KEY" in reply.text
    assert "no Google API key" in log and "GOOGLE_STT_API_KEY" in log


def test_serve_command_bad_setting_exits_2(tmp_path):
    (tmp_path / "conf.json").write_text(json.dumps({"key": KEY, "model": "latest-short"}))
    done = subprocess.run([sys.executable, "-m", "ovos_stt_plugin_google_apikey.cli", "serve",
                           "--config", str(tmp_path / "conf.json")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "'model' must be one of" in done.stderr and KEY not in done.stderr
