"""/openapi.json and /docs describe the server as it answers; declaring the contract did not
let FastAPI parse a body before the size limit."""
from __future__ import annotations

import socket
import warnings

import pytest
import requests
from audio_samples import tone, wav
from conftest import build_plugin
from hypothesis import HealthCheck, settings
from test_server import running

from ovos_stt_plugin_google_apikey.server import create_app
from ovos_stt_plugin_google_apikey.server.contract import AUDIO_FILE_TYPES

with warnings.catch_warnings():
    warnings.simplefilter("ignore")            # Starlette's httpx2 hint
    from fastapi.testclient import TestClient

TOKEN = "openapi-token-for-tests"
STT_ROUTES = {"/stt": "post", "/stt/json": "post", "/lang_detect": "post"}


def schema_of(app):
    with TestClient(app) as client:
        reply = client.get("/openapi.json")
        assert reply.status_code == 200
        docs = client.get("/docs")
        assert docs.status_code == 200 and "swagger-ui" in docs.text.lower()
    return reply.json()


def test_every_route_is_described_with_what_it_reads(engine):
    schema = schema_of(create_app(engine))
    paths = schema["paths"]
    assert set(paths) == {"/stt", "/stt/json", "/lang_detect", "/status", "/metrics"}
    stt = paths["/stt"]["post"]
    assert {p["name"] for p in stt["parameters"]} == {"lang", "sample_rate", "sample_width"}
    assert set(stt["requestBody"]["content"]) == {"audio/wav", "audio/flac", "audio/ogg", "audio/aiff",
                                                   "audio/mpeg", "application/octet-stream",
                                                   "multipart/form-data"}
    form = stt["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert form["required"] == ["audio"] and set(form["properties"]) == {"audio", "lang"}
    detect = paths["/lang_detect"]["post"]
    assert [p for p in detect["parameters"] if p["name"] == "valid_langs"][0]["required"] is True
    body = paths["/stt/json"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body["required"] == ["audio_b64"]
    assert set(body["properties"]) == {"audio_b64", "lang", "sample_rate", "sample_width"}
    assert "text/plain" in paths["/metrics"]["get"]["responses"]["200"]["content"]


def test_errors_are_declared_as_they_are_answered(engine):
    paths = schema_of(create_app(engine))["paths"]
    for path in STT_ROUTES:
        responses = paths[path]["post"]["responses"]
        assert {"400", "401", "408", "413", "415", "502", "503", "504"} <= set(responses)
        assert "422" not in responses                  # FastAPI validates nothing here
        assert "Retry-After" in responses["503"]["headers"]
    assert "text/plain" in paths["/stt"]["post"]["responses"]["400"]["content"]
    error = paths["/stt/json"]["post"]["responses"]["400"]["content"]["application/json"]["schema"]
    assert error == {"$ref": "#/components/schemas/ErrorBody"}
    assert "501" in paths["/lang_detect"]["post"]["responses"]


def test_with_a_token_the_schema_declares_it_and_docs_stay_open(engine):
    open_schema = schema_of(create_app(engine))
    assert "securitySchemes" not in open_schema.get("components", {})
    schema = schema_of(create_app(engine, token=TOKEN))      # /docs answered without the token
    assert schema["components"]["securitySchemes"] == {"HTTPBearer": {"type": "http",
                                                                      "scheme": "bearer"}}
    for path, method in {**STT_ROUTES, "/metrics": "get"}.items():
        assert schema["paths"][path][method]["security"] == [{"HTTPBearer": []}]
    assert "security" not in schema["paths"]["/status"]["get"]
    assert "WWW-Authenticate" in schema["paths"]["/metrics"]["get"]["responses"]["401"]["headers"]


def test_the_token_is_still_checked_by_the_server_not_by_the_declaration(engine, fake):
    with TestClient(create_app(engine, token=TOKEN)) as client:
        refused = client.post("/stt", content=wav(tone(0.5)))
        wrong_scheme = client.post("/stt", content=wav(tone(0.5)),
                                   headers={"Authorization": f"Basic {TOKEN}"})
    assert refused.status_code == wrong_scheme.status_code == 401
    assert "Bearer" in refused.text and fake.requests == []


def test_a_chunked_multipart_upload_past_max_body_is_cut_off_unparsed(engine, fake):
    """Declaring multipart did not make FastAPI read the form first: the limiter still cuts
    a body with no Content-Length at max_body."""
    limit = 64 * 1024
    with running(create_app(engine, max_body=limit)) as url:
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
            conn.sendall(b"POST /stt HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n"
                         b"Content-Type: multipart/form-data; boundary=xyz\r\n\r\n")
            head = (b'--xyz\r\nContent-Disposition: form-data; name="audio"; filename="a.wav"\r\n'
                    b"Content-Type: audio/wav\r\n\r\n")
            conn.sendall(b"%x\r\n%s\r\n" % (len(head), head))
            chunk = b"\x01\x02" * 8192
            for _ in range(5):                     # 80 KiB of a part that never ends
                conn.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            answer = conn.recv(65536)
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert fake.requests == []


def test_the_documented_curl_forms_work_on_a_real_socket(engine, fake):
    speech = wav(tone(1.0))
    with running(create_app(engine)) as url:
        body = requests.post(f"{url}/stt", data=speech, params={"lang": "en-US"},
                             headers={"Content-Type": "audio/wav"}, timeout=10)
        form = requests.post(f"{url}/stt", files={"audio": ("a.wav", speech, "audio/wav")},
                             data={"lang": "en-US"}, timeout=10)
        raw = requests.post(f"{url}/stt", data=speech[44:],
                            params={"sample_rate": 16000, "sample_width": 2}, timeout=10)
    assert [r.status_code for r in (body, form, raw)] == [200, 200, 200]
    assert body.text == form.text == raw.text == "audio 1.00 seconds at 16000 hertz"


try:                                          # the [test] extra
    import schemathesis
    from schemathesis.checks import not_a_server_error, positive_data_acceptance
except ImportError:                           # pragma: no cover
    schemathesis = None

@pytest.fixture(scope="module")
def token_app(fake_server):
    engine = build_plugin(fake_server.endpoint)
    yield create_app(engine, token=TOKEN)
    engine.shutdown()


if schemathesis is not None:
    schemathesis.serializer.alias(AUDIO_FILE_TYPES, "application/octet-stream")
    # The schema a token-protected app serves. schemathesis sends no token: every route but
    # /status must refuse with the 401 its schema declares.
    TOKEN_SCHEMA = schemathesis.openapi.from_asgi("/openapi.json", create_app(None, token=TOKEN))

    @TOKEN_SCHEMA.parametrize()
    @settings(max_examples=5, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def test_a_token_protected_server_holds_to_its_schema(case, token_app, fake):
        response = case.call(app=token_app)
        refused = 200 if case.path == "/status" else 401
        assert response.status_code in (refused, 405), response.text   # 405: a method probe
        case.validate_response(response, excluded_checks=[not_a_server_error,
                                                           positive_data_acceptance])
        assert fake.requests == []
