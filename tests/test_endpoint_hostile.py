"""A misbehaving endpoint (a proxy, a mistyped or hostile `endpoint`, a captive portal): every
answer becomes a transcript or one of our errors, nothing follows a redirect, and neither the
key nor the endpoint's credentials show anywhere. Each case is its own test, in-process and
through the server, with every logger (urllib3 included) at DEBUG."""
from __future__ import annotations

import json
import logging
import math
import warnings

import pytest
from audio_samples import tone, wav
from fake_google import FakeGoogle, Fault

from ovos_stt_plugin_google_apikey import errors
from ovos_stt_plugin_google_apikey.plugin import GoogleAPIKeySTT
from ovos_stt_plugin_google_apikey.server import create_app
from ovos_stt_plugin_google_apikey.wire import MAX_RETRY_HINT

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

KEY = "AIzaSy-MARKER-hostile-key-0b7d2e9"     # not the shape of a real key: 35 chars after AIza differ
PASSWORD = "MARKER-proxy-password-61aa"
TIMEOUT = 2.0
SPEECH = tone(0.5)
HEARD = "audio 0.50 seconds at 16000 hertz"


@pytest.fixture
def other_host():
    """A second server the endpoint may point to; it must never hear from us."""
    with FakeGoogle(valid_keys=(KEY,)) as other:
        yield other


@pytest.fixture
def engine(fake, plugin):
    fake.valid_keys = {KEY}
    return plugin(key=KEY, timeout=TIMEOUT, retries=1)   # this file's key is a marker shaped like a real one


@pytest.fixture
def server(engine):
    with TestClient(create_app(engine)) as client:
        yield client


@pytest.fixture
def leaks(caplog):
    """Collects every text a user or a log could see; at the end none may hold a secret."""
    caplog.set_level(logging.DEBUG)
    seen: list = []
    yield seen
    seen += [caplog.text, *(r.getMessage() for r in caplog.records)]
    found = [t for t in seen if KEY in str(t) or PASSWORD in str(t)]
    assert not found, found[:3]


def exposed(exc: BaseException) -> list:
    """Everything about an exception a traceback or a caller shows."""
    texts = []
    while exc is not None:
        texts += [str(exc), repr(exc), *map(str, exc.args), *map(str, vars(exc).values())]
        exc = exc.__cause__ or exc.__context__
    return texts


def server_texts(reply) -> list:
    return [reply.text, *map(str, reply.headers.items())]


# ------------------------------------------------------------------------------ redirects

@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_to_another_host_is_not_followed(engine, fake, other_host, leaks, status):
    target = other_host.url.replace("127.0.0.1", "localhost")
    fake.script(Fault.redirect(status, target))
    with pytest.raises(errors.UnavailableError) as info:
        engine.execute(SPEECH)
    message = str(info.value)
    assert f"answered {status} redirecting to localhost:" in message and fake.endpoint in message
    assert len(fake.requests) == 1 and other_host.requests == []   # no retry, nothing followed
    leaks += exposed(info.value)


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirect_through_the_server_is_503_naming_where_it_pointed(server, fake, other_host, leaks, status):
    fake.script(Fault.redirect(status, other_host.url))
    reply = server.post("/stt", content=wav(SPEECH))
    assert reply.status_code == 503 and "redirecting to 127.0.0.1:" in reply.text
    assert other_host.requests == []
    leaks += server_texts(reply)


def test_a_redirect_carrying_the_key_shows_only_the_host(engine, fake, leaks):
    fake.script(Fault.redirect(307, f"http://{KEY.lower()}.example/steal?key={KEY}&u=x:{KEY}@y"))
    with pytest.raises(errors.UnavailableError) as info:
        engine.execute(SPEECH)
    assert "redirecting to ***.example" in str(info.value)
    leaks += exposed(info.value)


def test_a_relative_or_broken_redirect_is_still_an_error(engine, fake, leaks):
    for location in ("/elsewhere", "http://[::1", ""):
        fake.script(Fault.redirect(302, location))
        with pytest.raises(errors.UnavailableError, match="redirecting to") as info:
            engine.execute(SPEECH)
        leaks += exposed(info.value)


def test_the_warm_up_head_does_not_follow_a_redirect(engine, fake, other_host, leaks):
    fake.head_answer = (307, {"Location": other_host.endpoint + "/"})
    engine.recognizer.client.warm()
    assert [r.method for r in fake.requests] == ["HEAD"] and other_host.requests == []
    assert "X-Goog-Api-Key" not in fake.requests[0].headers        # the warm-up is keyless


# -------------------------------------------------------------------- the key echoed back

ECHO = {"error": {"code": 403, "message": f"key {KEY} refused", "status": f"DENIED_{KEY}",
                  "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": f"R_{KEY}",
                               "domain": KEY, "metadata": {"key": KEY}},
                              {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "1s"},
                              {"@type": "type.googleapis.com/google.rpc.Help", "links": [{"url": KEY}]}]}}


@pytest.mark.parametrize("status", [400, 403, 429, 500, 503])
def test_the_key_echoed_in_every_field_of_an_error_shows_nowhere(engine, server, fake, leaks, status):
    echo = {"error": {**ECHO["error"], "code": status}}
    fake.script(*[Fault.answer(status, echo, {"Retry-After": KEY, "X-Echo": KEY})] * 4)
    with pytest.raises(errors.APIError) as info:
        engine.execute(SPEECH)
    leaks += exposed(info.value)
    reply = server.post("/stt", content=wav(SPEECH))
    assert reply.status_code in (502, 503)
    leaks += server_texts(reply)
    leaks += server_texts(server.get("/status"))
    leaks += [repr(engine), repr(engine.settings), repr(engine.recognizer.client)]


def test_endpoint_credentials_are_used_but_shown_nowhere(fake, leaks):
    fake.valid_keys = {KEY}
    endpoint = fake.endpoint.replace("http://", f"http://user:{PASSWORD}@")
    engine = GoogleAPIKeySTT({"key": KEY, "endpoint": endpoint, "lang": "en-US", "timeout": TIMEOUT})
    try:
        assert engine.execute(SPEECH) == HEARD
        assert fake.requests[-1].headers["Authorization"].startswith("Basic ")
        fake.script(Fault.redirect(307, "http://elsewhere/"), Fault.http(400))
        for _ in range(2):
            with pytest.raises(errors.APIError) as info:
                engine.execute(SPEECH)
            assert "http://***@127.0.0.1" in str(info.value) or "To fix" in str(info.value)
            leaks += exposed(info.value)
        with TestClient(create_app(engine)) as client:
            leaks += server_texts(client.get("/status"))
        leaks += [repr(engine), repr(engine.settings), repr(engine.recognizer.client)]
    finally:
        engine.shutdown()
    dead = GoogleAPIKeySTT({"key": KEY, "endpoint": f"http://user:{PASSWORD}@127.0.0.1:9", "timeout": 1,
                            "retries": 0, "lang": "en-US"})
    with pytest.raises(errors.UnavailableError) as info:
        dead.execute(SPEECH)
    dead.shutdown()
    assert "http://***@127.0.0.1:9" in str(info.value)
    leaks += exposed(info.value)


@pytest.mark.parametrize("endpoint", [
    f"https://speech.googleapis.com/v1/speech:recognize?key={KEY}",       # as Google's docs write it
    f"https://speech.googleapis.com/#key={KEY}", f"http://[::1?key={KEY}"])
def test_an_endpoint_carrying_the_key_is_refused_without_showing_it(endpoint, leaks):
    with pytest.raises(errors.ConfigError) as info:
        GoogleAPIKeySTT({"key": KEY, "endpoint": endpoint})
    leaks += exposed(info.value)


def test_endpoint_credentials_echoed_as_basic_auth_show_nowhere(fake, leaks, caplog):
    # A proxy refusing the request may echo the Authorization header it got.
    fake.valid_keys = {KEY}
    endpoint = fake.endpoint.replace("http://", f"http://user:{PASSWORD}@")
    basic = __import__("base64").b64encode(f"user:{PASSWORD}".encode()).decode()
    engine = GoogleAPIKeySTT({"key": KEY, "endpoint": endpoint, "lang": "en-US", "timeout": TIMEOUT,
                              "retries": 0})
    echo = json.dumps({"error": {"code": 403, "message": f"proxy auth Basic {basic} refused",
                                 "status": "PERMISSION_DENIED"}})
    try:
        fake.script(Fault.answer(403, echo))
        with pytest.raises(errors.APIError) as info:
            engine.execute(SPEECH)
        assert "proxy auth Basic *** refused" in str(info.value)
        leaks += exposed(info.value)
        with TestClient(create_app(engine)) as client:
            fake.script(Fault.answer(403, echo))
            reply = client.post("/stt", content=wav(SPEECH))
            assert reply.status_code == 502
            leaks += server_texts(reply)
    finally:
        engine.shutdown()
    assert not any(basic in str(text) for text in [*leaks, caplog.text])


# ------------------------------------------------------------------ broken and mistyped JSON

@pytest.mark.parametrize("body", [
    "[" * 100_000, '{"results": ' + "[" * 100_000, '{"a":' * 50_000 + "1" + "}" * 50_000,
    "", "null", "[]", '"text"', "<html>captive portal</html>", "\xff\xfe garbage",
])
def test_a_200_that_is_not_a_recognize_response_is_unavailable(engine, server, fake, leaks, body):
    fake.script(*[Fault.answer(200, body)] * 2)
    with pytest.raises(errors.UnavailableError):
        engine.execute(SPEECH)
    fake.script(*[Fault.answer(200, body)] * 2)
    assert server.post("/stt", content=wav(SPEECH)).status_code == 503


@pytest.mark.parametrize("status", [400, 403, 429, 500])
def test_an_error_nested_too_deep_is_still_our_error(engine, fake, status):
    fake.script(*[Fault.answer(status, '{"error": ' + "[" * 100_000)] * 2)
    with pytest.raises(errors.APIError) as info:
        engine.execute(SPEECH)
    assert info.value.status == status


@pytest.mark.parametrize("result", [
    {"alternatives": [{"transcript": "hi", "confidence": 1e999}], "languageCode": 5},
    {"alternatives": [{"transcript": "hi", "confidence": "NaN"}], "languageCode": ["en"]},
    {"alternatives": [{"transcript": "hi", "confidence": -5}], "languageCode": {"x": 1}},
    {"alternatives": [{"transcript": "hi", "confidence": True}], "languageCode": None},
    {"alternatives": [{"transcript": "hi", "confidence": "0.9"}], "languageCode": "en-us"},
    {"alternatives": [{"transcript": "hi", "confidence": [0.5]}, {"transcript": "ho", "confidence": 7}]},
])
def test_mistyped_fields_give_a_valid_transcript(engine, server, fake, result):
    answer = json.dumps({"results": [result]}).replace("1e999", "1e999")   # json.dumps writes Infinity
    for _ in range(3):
        fake.script(Fault.answer(200, answer))
    pairs = engine.transcribe(SPEECH)
    assert pairs and pairs[0][0] == "hi"
    assert all(isinstance(c, float) and 0 <= c <= 1 for _, c in pairs)
    assert server.post("/stt", content=wav(SPEECH)).text == "hi"
    reply = server.post("/stt/json", json={"audio_b64": __import__("base64").b64encode(wav(SPEECH)).decode()})
    assert reply.status_code == 200 and isinstance(reply.json()["lang"], str)


def test_detect_language_with_an_infinite_confidence(engine, server, fake):
    answer = '{"results": [{"alternatives": [{"transcript": "hi", "confidence": 1e999}], "languageCode": "pt-pt"}]}'
    fake.script(Fault.answer(200, answer))
    lang, conf = engine.detect_language(SPEECH, ["en-US", "pt-PT"])
    assert (lang, conf) == ("pt-PT", 0.5)
    fake.script(Fault.answer(200, answer))
    reply = server.post("/lang_detect?valid_langs=en-US,pt-PT", content=wav(SPEECH))
    assert reply.status_code == 200 and reply.json() == {"lang": "pt-PT", "conf": 0.5}


HUGE = "1" + "0" * 400                    # a whole number no float can hold


@pytest.mark.parametrize("route", ["/stt", "/stt?lang=auto", "/lang_detect?valid_langs=en-US,pt-PT"])
def test_a_confidence_too_large_for_a_float_is_ignored(fake, route):
    fake.valid_keys = {KEY}
    engine = GoogleAPIKeySTT({"key": KEY, "endpoint": fake.endpoint, "lang": "en-US", "timeout": TIMEOUT,
                              "auto_languages": ["en-US", "pt-PT"]})
    answer = ('{"results": [{"alternatives": [{"transcript": "hi", "confidence": %s}], '
              '"languageCode": "pt-pt"}]}' % HUGE)
    try:
        fake.script(Fault.answer(200, answer))
        assert engine.transcribe(SPEECH) == [("hi", 1.0)]        # unknown: OVOS's 1.0 for the top
        fake.script(Fault.answer(200, answer))
        assert engine.detect_language(SPEECH, ["en-US", "pt-PT"]) == ("pt-PT", 0.5)
        with TestClient(create_app(engine)) as client:
            fake.script(Fault.answer(200, answer))
            reply = client.post(route, content=wav(SPEECH))
        assert reply.status_code == 200, reply.text
    finally:
        engine.shutdown()


def test_lone_surrogates_from_the_endpoint_are_replaced_not_a_500(engine, server, fake):
    # "\ud800" is valid JSON but no valid UTF-8: it must not reach an encoder as it is.
    transcript = '{"results": [{"alternatives": [{"transcript": "hi \\ud800 there"}]}]}'
    fake.script(Fault.answer(200, transcript))
    assert engine.execute(SPEECH) == "hi \ufffd there"
    for route in ("/stt", "/stt/json"):
        fake.script(Fault.answer(200, transcript))
        body = {"json": {"audio_b64": __import__("base64").b64encode(wav(SPEECH)).decode()}} \
            if route == "/stt/json" else {"content": wav(SPEECH)}
        reply = server.post(route, **body)
        assert reply.status_code == 200 and "hi \ufffd there" in reply.text, reply.text
    error = '{"error": {"code": 400, "message": "bad \\udc00 audio", "status": "INVALID_ARGUMENT"}}'
    fake.script(Fault.answer(400, error))
    with pytest.raises(errors.RequestRejectedError, match="bad \ufffd audio"):
        engine.execute(SPEECH)
    fake.script(Fault.answer(400, error))
    reply = server.post("/stt", content=wav(SPEECH))
    assert reply.status_code == 502 and "bad \ufffd audio" in reply.text


# ------------------------------------------------------------------------ retry hints

@pytest.mark.parametrize("header", ["1e308", "inf", "nan", "-1", "soon", "9" * 400, "1e308s",
                                    "Wed, 21 Oct 2099 07:28:00 GMT"])
@pytest.mark.parametrize("status", [429, 503])
def test_huge_or_non_numeric_retry_after_is_clamped(engine, server, fake, header, status):
    fake.script(*[Fault.answer(status, {"error": {"code": status}}, {"Retry-After": header})] * 4)
    with pytest.raises(errors.APIError) as info:
        engine.execute(SPEECH)
    hint = info.value.retry_after
    assert hint is None or (math.isfinite(hint) and 0 <= hint <= MAX_RETRY_HINT)
    if hint is not None and hint > TIMEOUT:             # never slept toward a hint past the deadline
        assert len(fake.requests) == 1
    reply = server.post("/stt", content=wav(SPEECH))
    assert reply.status_code == 503
    assert 0 <= int(reply.headers.get("retry-after", "0")) <= MAX_RETRY_HINT


@pytest.mark.parametrize("delay", ["inf", "1e308s", "-3s", 5, None, {"seconds": 1}, "Infinitys"])
def test_huge_or_mistyped_retry_delay_is_clamped(engine, server, fake, delay):
    body = {"error": {"code": 429, "status": "RESOURCE_EXHAUSTED", "message": "Quota exceeded.",
                      "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay}]}}
    fake.script(*[Fault.answer(429, body)] * 4)
    with pytest.raises(errors.QuotaError) as info:
        engine.execute(SPEECH)
    assert info.value.retry_after is None or 0 <= info.value.retry_after <= MAX_RETRY_HINT
    reply = server.post("/stt", content=wav(SPEECH))
    assert reply.status_code == 503 and len(reply.headers.get("retry-after", "")) <= 4


# ------------------------------------------------------------------- wrong endpoint, shutdown

def test_a_404_says_to_check_endpoint(fake, leaks):
    fake.valid_keys = {KEY}
    engine = GoogleAPIKeySTT({"key": KEY, "endpoint": fake.endpoint + "/wrong-prefix", "lang": "en-US"})
    try:
        with pytest.raises(errors.EndpointError, match="check 'endpoint'") as info:
            engine.execute(SPEECH)
        leaks += exposed(info.value)
    finally:
        engine.shutdown()


def test_an_endpoint_naming_the_method_is_used_as_its_base(fake):
    fake.valid_keys = {KEY}
    engine = GoogleAPIKeySTT({"key": KEY, "endpoint": fake.url, "lang": "en-US"})
    try:
        assert engine.execute(SPEECH) == HEARD
    finally:
        engine.shutdown()


def test_after_shutdown_calls_raise_our_error(fake):
    fake.valid_keys = {KEY}
    engine = GoogleAPIKeySTT({"key": KEY, "endpoint": fake.endpoint, "lang": "en-US",
                              "auto_languages": ["en-US", "pt-PT", "es-ES", "fr-FR", "de-DE"]})
    engine.shutdown()
    calls = [lambda: engine.execute(SPEECH), lambda: engine.transcribe(SPEECH),
             lambda: engine.execute(tone(70.0)),                       # long audio: the worker pool
             lambda: engine.detect_language(SPEECH, ["en-US", "pt-PT", "es-ES", "fr-FR", "de-DE"])]
    for call in calls:
        with pytest.raises(errors.ClosedError, match="shut down"):
            call()
    assert fake.requests == []


@pytest.mark.parametrize("call", ["long", "detect"])
def test_shutdown_during_a_call_ends_it_with_our_error(fake, call):
    """Parts and candidate groups still queued when the engine shuts down: the call ends with
    ClosedError once the running requests end (was: waited forever, or a DeadlineError)."""
    fake.valid_keys = {KEY}
    fake.delay = 1.0
    engine = GoogleAPIKeySTT({"key": KEY, "endpoint": fake.endpoint, "lang": "en-US", "timeout": 10,
                              "max_workers": 1})
    candidates = ["en-US", "pt-PT", "es-ES", "fr-FR", "de-DE", "it-IT", "nl-NL", "pl-PL", "sv-SE"]
    run = {"long": lambda: engine.execute(tone(170.0)),               # 4 parts, one at a time
           "detect": lambda: engine.detect_language(SPEECH, candidates)}[call]
    outcome: list = []

    def caller():
        try:
            outcome.append(run())
        except Exception as exc:          # noqa: BLE001 - the type is what is checked
            outcome.append(exc)

    thread = __import__("threading").Thread(target=caller)
    thread.start()
    deadline = __import__("time").monotonic() + 10
    while not fake.requests and __import__("time").monotonic() < deadline:
        __import__("time").sleep(0.01)     # until the first request is at the fake, the rest queued
    engine.shutdown()
    engine.shutdown()                      # twice, as OVOS and a caller may: still quiet
    thread.join(15)
    assert not thread.is_alive()
    assert isinstance(outcome[0], errors.ClosedError), outcome
    assert len([r for r in fake.requests if r.method == "POST"]) == 1, [(r.method, r.path) for r in fake.requests]


# ------------------------------------------------------------------ anything at all

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
                    max_leaves=20)
FIELDS = st.sampled_from(["results", "alternatives", "transcript", "confidence", "languageCode", "error",
                          "code", "message", "status", "details", "@type", "reason", "retryDelay"])
SHAPED = st.recursive(JSON, lambda inner: st.dictionaries(FIELDS, inner, max_size=4) | st.lists(inner, max_size=3),
                      max_leaves=25)


@pytest.mark.slow
@settings(max_examples=150, derandomize=True, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(status=st.sampled_from([200, 200, 200, 201, 204, 301, 304, 400, 401, 403, 404, 418, 429, 500, 502, 503, 504]),
       body=SHAPED, retry_after=st.one_of(st.none(), st.text(st.characters(min_codepoint=32, max_codepoint=126),
                                                                 max_size=30)))
def test_any_answer_is_a_transcript_or_our_error_and_never_a_500(engine, server, fake, status, body, retry_after):
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    fake.reset()
    fake.valid_keys = {KEY}
    fake.script(*[Fault.answer(status, body, headers)] * 4)
    try:
        pairs = engine.transcribe(SPEECH)
    except errors.GoogleSTTError as exc:
        hint = getattr(exc, "retry_after", None)
        assert hint is None or (math.isfinite(hint) and 0 <= hint <= MAX_RETRY_HINT)
    else:
        assert all(isinstance(t, str) and isinstance(c, float) and 0 <= c <= 1 for t, c in pairs)
    reply = server.post("/stt", content=wav(SPEECH))
    assert reply.status_code in (200, 502, 503, 504), reply.text
    fake.script(*[Fault.answer(status, body, headers)] * 4)
    reply = server.post("/lang_detect?valid_langs=en-US,pt-PT", content=wav(SPEECH))
    assert reply.status_code in (200, 502, 503, 504), reply.text


def test_callers_passing_the_wrong_types_get_our_error(engine, fake):
    for call in (lambda: engine.execute(SPEECH, 5), lambda: engine.transcribe(SPEECH, b"en"),
                 lambda: engine.detect_language(SPEECH, [5, "en-US"]),
                 lambda: engine.detect_language(SPEECH, 5),
                 lambda: engine.detect_language(SPEECH, [["en-US"], "pt-PT"]),
                 lambda: engine.detect_language(SPEECH, [f"en-{n}" for n in range(33)])):
        with pytest.raises(errors.ConfigError):
            call()
    assert engine.detect_language(SPEECH, "pt-PT") == ("pt-PT", 1.0)     # one tag, not 5 letters
    assert fake.requests == []


@pytest.mark.parametrize("status", [101, 201, 204])
def test_a_status_google_never_sends_is_unavailable_not_advice_about_the_audio(engine, fake, status):
    fake.script(*[Fault.answer(status, "{}")] * 2)
    with pytest.raises(errors.UnavailableError, match=f"answered {status}, which Google"):
        engine.execute(SPEECH)


def test_a_header_block_that_never_ends_is_a_deadline(leaks):
    import socket
    import threading
    import time as clock
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve():
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(5)
            received = b""
            while b"\r\n\r\n" not in received:
                received += conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n")
            try:
                while not stop.wait(0.1):
                    conn.sendall(b"X-Still: coming\r\n")        # headers, never their end
            except OSError:
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    engine = GoogleAPIKeySTT({"key": KEY, "endpoint": f"http://127.0.0.1:{listener.getsockname()[1]}",
                              "lang": "en-US", "timeout": 1, "retries": 0})
    try:
        started = clock.monotonic()
        with pytest.raises(errors.DeadlineError):
            engine.execute(SPEECH)
        assert clock.monotonic() - started < 30          # ended by the deadline, not by the test
    finally:
        stop.set()
        engine.shutdown()
        listener.close()
