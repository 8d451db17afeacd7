"""Bad input, generated: audio decoding never raises anything but AudioError, the server never
answers a 500 or a traceback, and its HTTP surface holds to its OpenAPI schema."""
from __future__ import annotations

import struct
import warnings
from types import SimpleNamespace
from typing import Any

import pytest
from audio_samples import tone, wav
from conftest import KEY
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ovos_stt_plugin_google_apikey import audio, decoding
from ovos_stt_plugin_google_apikey.errors import AudioError
from ovos_stt_plugin_google_apikey.plugin import GoogleAPIKeySTT
from ovos_stt_plugin_google_apikey.server import create_app
from ovos_stt_plugin_google_apikey.server.contract import AUDIO_FILE_TYPES

with warnings.catch_warnings():
    warnings.simplefilter("ignore")            # Starlette's httpx2 hint
    from fastapi.testclient import TestClient

FIXTURE_OK = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
SPEECH = wav(tone(0.2))


def assert_pcm_or_audio_error(make: Any) -> None:
    """``make()`` and then to_linear16 give valid PCM, or raise AudioError; nothing else."""
    try:
        pcm = make()
        mono = audio.to_linear16(pcm)
    except AudioError as exc:
        assert str(exc).strip()
        return
    assert isinstance(pcm, audio.PCM) and len(pcm.data) % pcm.frame_size == 0
    assert (mono.sample_width, mono.channels) == (2, 1)
    assert audio.GOOGLE_MIN_RATE <= mono.sample_rate <= audio.GOOGLE_MAX_RATE
    assert len(mono.data) % 2 == 0


# ------------------------------------------------------------------ audio decoding

def riff(fmt_tag: int, channels: int, rate: int, bits: int, data: bytes, declared: int,
         fmt_size: int = 16, riff_size: int = -1) -> bytes:
    """A WAV file whose header may lie about anything."""
    align = (channels * bits // 8) & 0xFFFF
    fmt = struct.pack("<HHIIHH", fmt_tag, channels, rate, (rate * align) & 0xFFFFFFFF, align, bits)
    fmt = (fmt + bytes(max(0, fmt_size - 16)))[:fmt_size]
    body = b"WAVE" + b"fmt " + struct.pack("<I", fmt_size) + fmt + b"data" + struct.pack("<I", declared) + data
    return b"RIFF" + struct.pack("<I", (len(body) if riff_size < 0 else riff_size)) + body


u16 = st.one_of(st.sampled_from([0, 1, 2, 3, 8, 32, 33, 0xFFFF]), st.integers(0, 0xFFFF))
u32 = st.one_of(st.sampled_from([0, 1, 999, 8000, 16000, 48000, 768000, 768001, 0xFFFFFFFF]),
                st.integers(0, 0xFFFFFFFF))
bits = st.one_of(st.sampled_from([0, 1, 4, 8, 12, 16, 20, 24, 32, 40, 64]), st.integers(0, 0xFFFF))


@settings(max_examples=300, deadline=None)
@given(fmt_tag=st.sampled_from([1, 1, 1, 3, 6, 7, 0xFFFE, 0]), channels=u16, rate=u32, bits=bits,
       data=st.binary(max_size=512), declared=st.one_of(st.just(-1), u32),
       fmt_size=st.sampled_from([14, 16, 18, 40]), cut=st.one_of(st.none(), st.integers(0, 600)))
def test_lying_wav_headers_give_pcm_or_audio_error(fmt_tag, channels, rate, bits, data, declared,
                                                   fmt_size, cut):
    declared = len(data) if declared < 0 else declared
    blob = riff(fmt_tag, channels, rate, bits, data, declared, fmt_size)
    if cut is not None:
        blob = blob[:cut]                       # truncated anywhere, the header included
    assert_pcm_or_audio_error(lambda: decoding.from_wav(blob))
    assert_pcm_or_audio_error(lambda: decoding.from_audio(blob))


@settings(max_examples=300, deadline=None)
@given(prefix=st.sampled_from([b"", b"RIFF", b"RIFF\xff\xff\xff\xffWAVE", b"fLaC", b"OggS"]),
       body=st.binary(max_size=1024))
def test_random_bytes_give_pcm_or_audio_error(prefix, body):
    assert_pcm_or_audio_error(lambda: decoding.from_audio(prefix + body))


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=2048), rate=st.integers(-10, 10 ** 7),
       width=st.integers(-1, 9), channels=st.integers(-1, 40))
def test_any_raw_pcm_format_gives_pcm_or_audio_error(data, rate, width, channels):
    assert_pcm_or_audio_error(lambda: audio.from_raw(data, rate, width, channels))


numbers = st.one_of(st.none(), st.integers(-10, 10 ** 12), st.floats(allow_nan=True, allow_infinity=True),
                    st.text(max_size=6), st.booleans())


@settings(max_examples=200, deadline=None)
@given(frames=st.binary(max_size=256), rate=numbers, width=numbers)
def test_audiodata_like_objects_with_odd_fields_give_pcm_or_audio_error(frames, rate, width):
    fake_audio = SimpleNamespace(frame_data=frames, sample_rate=rate, sample_width=width)
    assert_pcm_or_audio_error(lambda: decoding.from_audio(fake_audio))


@pytest.mark.parametrize("thing", [None, 3, "RIFF", ["bytes"], SimpleNamespace(frame_data="text")])
def test_things_that_are_not_audio_are_audio_errors(thing):
    with pytest.raises(AudioError, match="cannot read audio"):
        decoding.from_audio(thing)


# ------------------------------------------------------------------ the server's request parsing

@pytest.fixture(scope="module")
def client(fake_server):
    engine = GoogleAPIKeySTT({"key": KEY, "endpoint": fake_server.endpoint, "lang": "en-US",
                              "timeout": 3, "retries": 0})
    with TestClient(create_app(engine)) as client:
        yield client
    engine.shutdown()


def assert_clear_answer(reply: Any, allowed: tuple = (200, 400, 408, 413, 415, 502)) -> None:
    """A documented status; an error is one line of text (or one JSON 'error'), no traceback."""
    assert reply.status_code in allowed, (reply.status_code, reply.text[:300])
    assert "Traceback" not in reply.text and 'File "' not in reply.text
    if reply.status_code >= 400:
        if reply.headers["content-type"].startswith("application/json"):
            message = reply.json()["error"]
        else:
            message = reply.text
            assert message.endswith("\n")
        assert message.strip() and "\n" not in message.strip()


field_names = st.sampled_from(["audio", "lang", "file", "Audio", "audio[]", "", "lang\x00"])
field_values = st.one_of(st.binary(max_size=64), st.just(SPEECH), st.text(max_size=20))


@settings(max_examples=120, deadline=None, suppress_health_check=FIXTURE_OK)
@given(files=st.dictionaries(field_names, field_values, max_size=3),
       data=st.dictionaries(field_names, st.text(max_size=20), max_size=3),
       filename=st.one_of(st.none(), st.text(max_size=10)), query_lang=st.one_of(st.none(), st.text(max_size=8)))
def test_any_multipart_upload_gets_a_clear_answer(client, files, data, filename, query_lang):
    files = {name: ((filename, value) if filename is not None else value) for name, value in files.items()}
    params = {} if query_lang is None else {"lang": query_lang}
    if not files and not data:
        return
    reply = client.post("/stt", files=files or None, data=data or None, params=params)
    assert_clear_answer(reply)


@settings(max_examples=150, deadline=None, suppress_health_check=FIXTURE_OK)
@given(path=st.sampled_from(["/stt", "/stt/json", "/lang_detect"]),
       query=st.binary(max_size=200), content_type=st.sampled_from(
           ["", "audio/wav", "application/json", "multipart/form-data", "multipart/form-data; boundary=",
            "multipart/form-data; boundary=x", "text/plain; charset=\xff", "application/x-www-form-urlencoded"]),
       body=st.one_of(st.just(SPEECH), st.binary(max_size=200)))
def test_any_raw_query_string_and_content_type_gets_a_clear_answer(client, path, query, content_type, body):
    # Percent-encode every byte: invalid UTF-8, NULs, '&' and '=' in odd places all reach the app.
    raw = "".join(f"%{b:02X}" if b not in b"=&" else chr(b) for b in query)
    headers = {"Content-Type": content_type.encode("latin-1")} if content_type else {}
    reply = client.post(f"{path}?{raw}", content=body, headers=headers)
    assert_clear_answer(reply)


@pytest.mark.parametrize("path", ["/stt", "/stt/json", "/lang_detect"])
@pytest.mark.parametrize("query", [                 # each near httpx's 64 KiB URL limit
    "lang=" + "a" * 60_000,
    "valid_langs=" + ",".join(f"en-{n}" for n in range(7_000)),
    "lang=%FF%FE" + "&x=1" * 14_000,
    "sample_rate=" + "9" * 60_000,
    "lang=en-US&lang=%C0%AF&lang=" + "%80" * 1000,
], ids=["long-lang", "many-valid-langs", "many-params", "long-rate", "bad-utf8-repeated"])
def test_huge_query_strings_are_4xx_in_one_line(client, fake, path, query):
    body = b'{"audio_b64": ""}' if path == "/stt/json" else SPEECH
    reply = client.post(f"{path}?{query}", content=body)
    # Only /lang_detect reads valid_langs (and refuses 7,000 candidates); /stt ignores it and
    # transcribes; /stt/json reads no query at all (its empty audio is the 400 here).
    ignored = query.startswith("valid_langs") and path == "/stt"
    assert_clear_answer(reply, (200,) if ignored else (400, 413, 414, 431))
    assert len(fake.requests) == (1 if ignored else 0)


@pytest.mark.parametrize("size", [10_000, 60_000, 200_000])
def test_huge_query_string_on_a_real_socket_is_refused_in_one_line(fake, size):
    """Through uvicorn's own HTTP parser, which refuses an over-long request head itself."""
    import socket

    from test_server import running
    engine = GoogleAPIKeySTT({"key": KEY, "endpoint": fake.endpoint, "lang": "en-US"})
    with running(create_app(engine)) as url:
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
            conn.sendall(b"POST /stt?lang=" + b"a" * size + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                         b"Content-Length: 0\r\n\r\n")
            answer = b""
            try:
                while chunk := conn.recv(65536):
                    answer += chunk
                    if b"\n" in answer.partition(b"\r\n\r\n")[2]:
                        break
            except ConnectionResetError:
                # Past its head limit uvicorn answers 400 and closes with the rest of the head
                # unread, so the kernel may reset the connection before the answer is read.
                assert size > 65536
                answer = answer or b"HTTP/1.1 400 (reset)\r\n\r\nreset\n"
    engine.shutdown()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 "), head[:100]
    assert body.strip() and b"\n" not in body.strip() and b"Traceback" not in body
    assert fake.requests == []


# ------------------------------------------------------------------ the OpenAPI surface

try:                                          # the [test] extra; only this part needs it
    import schemathesis
    from schemathesis.checks import not_a_server_error, positive_data_acceptance
except ImportError:                           # pragma: no cover
    schemathesis = None


@pytest.fixture(scope="module")
def fuzz_app(fake_server):
    engine = GoogleAPIKeySTT({"key": KEY, "endpoint": fake_server.endpoint, "lang": "en-US",
                              "timeout": 3, "retries": 0})
    yield create_app(engine)
    engine.shutdown()


if schemathesis is not None:
    # Audio files are bytes on the wire, as application/octet-stream is.
    schemathesis.serializer.alias(AUDIO_FILE_TYPES, "application/octet-stream")
    # The schema an app serves at /openapi.json, as is (the engine does not change it; the
    # requests go to fuzz_app, whose engine talks to the fake Google).
    SCHEMA = schemathesis.openapi.from_asgi("/openapi.json", create_app(None))

    @SCHEMA.parametrize()
    @settings(max_examples=25, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def test_openapi_surface(case, fuzz_app):
        response = case.call(app=fuzz_app)
        # Only the documented 5xx: 502/503/504 (Google) and 501 (no detection); never a 500.
        assert response.status_code < 500 or response.status_code in (501, 502, 503, 504), \
            (response.status_code, response.text[:300])
        assert "Traceback" not in response.text
        # positive_data_acceptance is left out: no schema can say which bytes are decodable
        # audio, so a schema-valid random body is rightly a 400.
        case.validate_response(response, excluded_checks=[not_a_server_error,
                                                           positive_data_acceptance])
else:                                         # pragma: no cover
    def test_openapi_surface():
        pytest.skip("schemathesis is not installed (the [test] extra)")
