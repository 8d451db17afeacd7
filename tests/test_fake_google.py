"""The fake Google server answers like Google, over real HTTP, before other tests lean on it."""

from __future__ import annotations

import base64
import http.client
import io
import json
import socket
import threading
import time
import wave
from typing import Any, Iterator

import numpy as np
import pytest
import requests
from fake_google import RECOGNIZE_PATH, AudioInfo, FakeGoogle, Fault

KEY = "test-key"


@pytest.fixture
def fake() -> Iterator[FakeGoogle]:
    with FakeGoogle() as server:
        yield server


def pcm(rate: int, seconds: float, channels: int = 1, amplitude: int = 8000) -> bytes:
    t = np.arange(int(rate * seconds)) / rate
    tone = (amplitude * np.sin(2 * np.pi * 440 * t)).astype("<i2")
    return np.repeat(tone[:, None], channels, axis=1).tobytes()


def wav(rate: int, seconds: float, channels: int = 1, width: int = 2, amplitude: int = 8000) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as writer:
        writer.setnchannels(channels)
        writer.setsampwidth(width)
        writer.setframerate(rate)
        frames = pcm(rate, seconds, channels, amplitude)
        writer.writeframes(frames if width == 2 else bytes(len(frames) // 2))
    return out.getvalue()


def body(audio: bytes, **config: Any) -> dict:
    return {"config": {"languageCode": "en-US", **config}, "audio": {"content": base64.b64encode(audio).decode()}}


def post(fake: FakeGoogle, payload: Any, key: str | None = KEY, **kw: Any) -> requests.Response:
    headers = {"X-Goog-Api-Key": key} if key else {}
    return requests.post(fake.url, json=payload, headers=headers, timeout=kw.pop("timeout", 5), **kw)


@pytest.mark.parametrize("rate", [8000, 16000, 22050, 44100, 48000])
def test_wav_is_described_at_its_header_rate(fake: FakeGoogle, rate: int) -> None:
    response = post(fake, body(wav(rate, 0.5)))
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json; charset=UTF-8"
    answer = response.json()
    assert answer["results"] == [{"alternatives": [{"transcript": f"audio 0.50 seconds at {rate} hertz",
                                                    "confidence": 0.9}],
                                  "resultEndTime": "0.500s", "languageCode": "en-us"}]
    assert answer["totalBilledTime"] == "1s" and answer["requestId"].isdigit()


def test_raw_pcm_alternatives_and_the_recorded_request(fake: FakeGoogle) -> None:
    payload = body(pcm(16000, 1.25), encoding="LINEAR16", sampleRateHertz=16000, maxAlternatives=3)
    alternatives = post(fake, payload).json()["results"][0]["alternatives"]
    assert alternatives[0]["transcript"] == "audio 1.25 seconds at 16000 hertz"
    assert [("confidence" in alt) for alt in alternatives] == [True, False, False]
    [seen] = fake.requests
    assert (seen.method, seen.path, seen.chunked, seen.json) == ("POST", RECOGNIZE_PATH, False, payload)
    assert seen.headers["x-goog-api-key"] == KEY and "X-GOOG-API-KEY" in seen.headers
    assert "X-Goog-Api-Key" in seen.headers.keys()  # the client's spelling is kept


def test_silence_gets_googles_empty_answer(fake: FakeGoogle) -> None:
    assert post(fake, body(wav(16000, 1.0, amplitude=0))).json() == {}


def test_proto_field_names_and_query_key_are_accepted(fake: FakeGoogle) -> None:
    payload = {"config": {"language_code": "en-US", "encoding": "LINEAR16", "sample_rate_hertz": 8000},
               "audio": {"content": base64.urlsafe_b64encode(pcm(8000, 1.0)).decode().rstrip("=")}}
    response = requests.post(fake.url, params={"key": KEY}, json=payload, timeout=5)
    assert response.json()["results"][0]["alternatives"][0]["transcript"] == "audio 1.00 seconds at 8000 hertz"
    assert fake.requests[0].query == {"key": [KEY]}


@pytest.mark.parametrize("kind, code, reason", [
    ("invalid", 400, "API_KEY_INVALID"), ("expired", 400, "API_KEY_INVALID"), ("disabled", 403, "SERVICE_DISABLED"),
    ("billing", 403, "BILLING_DISABLED"), ("restricted", 403, "API_KEY_SERVICE_BLOCKED"),
    ("key_type", 401, "CREDENTIALS_MISSING"), ("suspended", 403, "CONSUMER_SUSPENDED")])
def test_key_errors_carry_googles_reason(fake: FakeGoogle, kind: str, code: int, reason: str) -> None:
    fake.key_errors[KEY] = kind
    response = post(fake, body(wav(16000, 0.2)))
    assert response.status_code == code
    error = response.json()["error"]
    assert error["code"] == code and reason in [d.get("reason") for d in error["details"]]


def test_missing_and_unknown_keys(fake: FakeGoogle) -> None:
    missing = post(fake, body(wav(16000, 0.2)), key=None)
    assert missing.status_code == 403 and missing.json()["error"]["status"] == "PERMISSION_DENIED"
    assert missing.json()["error"]["message"].startswith("Method doesn't allow unregistered callers")
    unknown = post(fake, body(wav(16000, 0.2)), key="AIza-nope")
    assert unknown.status_code == 400
    assert unknown.json()["error"]["message"] == "API key not valid. Please pass a valid API key."


def _uri_too(payload: dict) -> dict:
    payload["audio"]["uri"] = "gs://bucket/a.wav"
    return payload


@pytest.mark.parametrize("payload, message", [
    (b"{not json", "Invalid JSON payload received. Unexpected token."),
    (body(b"", speech_context={}), "Invalid JSON payload received. Unknown name \"speech_context\" at 'config': "
                                   "Cannot find field."),
    ({"config": {"languageCode": "en-US"}}, "RecognitionAudio not set."),
    (_uri_too(body(b"")), "Invalid JSON payload received. Oneof field 'audio_source' is already set. Cannot set 'uri'."),
    ({"config": {"languageCode": "en-US"}, "audio": {"content": "!!"}},
     "Invalid value at 'audio.content' (TYPE_BYTES), Base64 decoding failed for \"!!\""),
    (body(b"", languageCode="xx-XX"), "Invalid recognition 'config': bad language code."),
    ({"config": {"encoding": "LINEAR16"}, "audio": {"content": ""}}, "Invalid recognition 'config': bad language code."),
    (body(b"", maxAlternatives=31), "Invalid recognition 'config': maxAlternatives must be between 0 and 30."),
    (body(b"", alternativeLanguageCodes=["fr-FR", "de-DE", "es-ES", "it-IT"]),
     "Invalid recognition 'config': at most 3 alternative language codes are allowed."),
    (body(b"", languageCode="iw-IL", model="latest_short"),
     "Invalid recognition 'config': The requested model is currently not supported for language : iw-IL."),
    (body(pcm(16000, 0.1)), "Invalid recognition 'config': bad encoding.."),
    (body(pcm(16000, 0.1), encoding="LINEAR16"), "Invalid recognition 'config': bad sample rate hertz."),
    (body(pcm(16000, 0.1), encoding="LINEAR16", sampleRateHertz=96000), "Invalid recognition 'config': bad sample rate hertz."),
    (body(b"OggS", encoding="OGG_OPUS", sampleRateHertz=44100), "Invalid recognition 'config': bad sample rate hertz."),
    (body(wav(22050, 0.1), sampleRateHertz=16000), "sample_rate_hertz (16000) in RecognitionConfig must either be "
                                                   "omitted or match the value in the WAV header ( 22050)."),
    (body(wav(16000, 0.1, channels=2)), "Must use single channel (mono) audio, but WAV header indicates 2 channels."),
    (body(wav(16000, 0.1, width=1)), "WAV header indicates an unsupported format."),
    (body(wav(16000, 0.1), encoding="FLAC"), "Specify LINEAR16 encoding to match file header."),
    (body(pcm(8000, 60.5), encoding="LINEAR16", sampleRateHertz=8000),
     "Sync input too long. For audio longer than 1 min use LongRunningRecognize with a 'uri' parameter."),
])
def test_bad_requests_get_googles_exact_400(fake: FakeGoogle, payload: Any, message: str) -> None:
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    response = requests.post(fake.url, data=data, headers={"X-Goog-Api-Key": KEY}, timeout=5)
    assert response.status_code == 400
    assert response.json() == {"error": {"code": 400, "message": message, "status": "INVALID_ARGUMENT"}}


def test_flac_and_ogg_opus_headers_are_read() -> None:
    soundfile = pytest.importorskip("soundfile")

    def encode(rate: int, fmt: str, subtype: str, amplitude: int = 8000) -> bytes:
        out = io.BytesIO()
        samples = np.frombuffer(pcm(rate, 1.0, amplitude=amplitude), dtype="<i2")
        soundfile.write(out, samples, rate, format=fmt, subtype=subtype)
        return out.getvalue()

    with FakeGoogle() as fake:
        flac = encode(16000, "FLAC", "PCM_16")
        said = post(fake, body(flac)).json()["results"][0]["alternatives"][0]["transcript"]
        assert said == "audio 1.00 seconds at 16000 hertz"
        assert post(fake, body(encode(16000, "FLAC", "PCM_16", amplitude=0))).json() == {}
        mismatch = post(fake, body(flac, sampleRateHertz=8000)).json()["error"]["message"]
        assert mismatch == ("sample_rate_hertz (8000) in RecognitionConfig must either be unspecified or match "
                            "the value in the FLAC header (16000).")
        wrong = post(fake, body(flac, encoding="LINEAR16", sampleRateHertz=16000)).json()["error"]["message"]
        assert wrong == "Specify FLAC encoding to match file header."
        opus = post(fake, body(encode(48000, "OGG", "OPUS"), encoding="OGG_OPUS", sampleRateHertz=48000)).json()
        assert opus["results"][0]["alternatives"][0]["transcript"] == "audio 1.00 seconds at 48000 hertz"


def test_recognizer_receives_decoded_audio(fake: FakeGoogle) -> None:
    seen: list[AudioInfo] = []
    fake.recognizer = lambda req, audio: seen.append(audio) or {"results": [{"alternatives": [{"transcript": "hi"}]}]}
    stereo = pcm(16000, 0.5, channels=2)
    assert post(fake, body(stereo, encoding="LINEAR16", sampleRateHertz=16000, audioChannelCount=2)).ok
    [audio] = seen
    assert (audio.sample_rate, audio.channels, audio.sample_width, audio.duration) == (16000, 2, 2, 0.5)
    assert audio.pcm == np.frombuffer(stereo, "<i2")[::2].tobytes()


def test_payload_limit_is_judged_from_content_length_before_reading(fake: FakeGoogle) -> None:
    port = int(fake.endpoint.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        sock.sendall(f"POST {RECOGNIZE_PATH} HTTP/1.1\r\nHost: x\r\nX-Goog-Api-Key: {KEY}\r\n"
                     "Content-Type: application/json\r\nContent-Length: 10485761\r\n\r\n".encode())
        response = http.client.HTTPResponse(sock)
        response.begin()  # answered although no body byte was sent
        assert response.status == 400 and response.getheader("Connection") == "close"
        assert json.loads(response.read())["error"]["message"] == "Request payload size exceeds the limit: 10485760 bytes."


def test_chunked_bodies_are_decoded_and_counted(fake: FakeGoogle) -> None:
    data = json.dumps(body(wav(16000, 1.0))).encode()
    pieces = (data[n : n + 1000] for n in range(0, len(data), 1000))
    response = requests.post(fake.url, data=pieces, headers={"X-Goog-Api-Key": KEY}, timeout=5)
    assert response.json()["results"][0]["alternatives"][0]["transcript"] == "audio 1.00 seconds at 16000 hertz"
    assert fake.requests[-1].chunked and fake.requests[-1].body == data
    huge = (b"x" * (1 << 20) for _ in range(11))
    too_big = requests.post(fake.url, data=huge, headers={"X-Goog-Api-Key": KEY}, timeout=5)
    assert too_big.status_code == 400 and "payload size exceeds" in too_big.json()["error"]["message"]
    fake.refuse_chunked = 411
    refused = requests.post(fake.url, data=iter([data]), headers={"X-Goog-Api-Key": KEY}, timeout=5)
    assert refused.status_code == 411 and refused.headers["Content-Type"].startswith("text/html")


def test_other_paths_and_methods(fake: FakeGoogle) -> None:
    assert requests.post(fake.endpoint + "/v1/speech:longrunningrecognize", json={}, timeout=5).status_code == 404
    assert requests.get(fake.url, timeout=5).status_code == 405


def test_scripted_http_faults_are_fifo_then_normal(fake: FakeGoogle) -> None:
    fake.script(Fault.http(503), Fault.http(429, retry_after=2))
    unavailable = post(fake, body(wav(16000, 0.2)))
    assert unavailable.status_code == 503 and unavailable.json() == {
        "error": {"code": 503, "message": "The service is currently unavailable.", "status": "UNAVAILABLE"}}
    quota = post(fake, body(wav(16000, 0.2)))
    assert quota.status_code == 429 and quota.headers["Retry-After"] == "2"
    assert quota.json()["error"]["details"][0]["reason"] == "RATE_LIMIT_EXCEEDED"
    assert post(fake, body(wav(16000, 0.2))).status_code == 200


def test_broken_connections_raise_and_the_server_survives(fake: FakeGoogle) -> None:
    fake.script(Fault.drop(), Fault.reset())
    with pytest.raises(requests.ConnectionError):
        post(fake, body(wav(16000, 0.2)))
    with pytest.raises((requests.ConnectionError, requests.exceptions.ChunkedEncodingError)):
        post(fake, body(wav(16000, 0.2))).json()
    assert post(fake, body(wav(16000, 0.2))).status_code == 200


def test_bad_200_bodies(fake: FakeGoogle) -> None:
    fake.script(Fault.html(), Fault.truncated(), Fault.shape())
    html = post(fake, body(wav(16000, 0.2)))
    assert html.status_code == 200 and html.headers["Content-Type"].startswith("text/html")
    truncated = post(fake, body(wav(16000, 0.2)))
    assert truncated.headers["Content-Type"].startswith("application/json")
    with pytest.raises(ValueError):
        truncated.json()
    assert post(fake, body(wav(16000, 0.2))).json() == {"results": "oops"}


def test_delays_and_trickle_take_their_time(fake: FakeGoogle) -> None:
    fake.script(Fault.delay(0.3), Fault.trickle(0.4))
    for minimum in (0.3, 0.4):
        started = time.monotonic()
        assert post(fake, body(wav(16000, 0.2))).json()["results"]
        assert time.monotonic() - started >= minimum
    fake.delay = 0.2
    started = time.monotonic()
    assert post(fake, body(wav(16000, 0.2))).ok and time.monotonic() - started >= 0.2


def test_hang_times_out_and_stop_stays_prompt() -> None:
    fake = FakeGoogle().start()
    fake.script(Fault.hang(30), Fault.hang(30))
    with pytest.raises(requests.ReadTimeout):
        post(fake, body(wav(16000, 0.2)), timeout=0.3)
    outcome: list[BaseException] = []

    def hung_request() -> None:
        try:
            post(fake, body(b""), timeout=30)
        except requests.RequestException as exc:
            outcome.append(exc)

    in_flight = threading.Thread(target=hung_request)
    in_flight.start()
    while len(fake.requests) < 2:
        time.sleep(0.01)
    started = time.monotonic()
    fake.stop()
    assert time.monotonic() - started < 1.0
    in_flight.join(2)
    assert isinstance(outcome[0], requests.ConnectionError)  # the hung connection was closed, not answered


def test_keep_alive_is_observable_and_reset_clears(fake: FakeGoogle) -> None:
    with requests.Session() as session:
        for _ in range(3):
            assert session.post(fake.url, json=body(wav(16000, 0.2)), headers={"X-Goog-Api-Key": KEY}, timeout=5).ok
    assert fake.connections == 1 and len(fake.requests) == 3
    fake.delay, fake.key_errors[KEY] = 5.0, "expired"
    fake.script(Fault.drop())
    fake.reset()
    assert (fake.connections, fake.requests, fake.delay, fake.key_errors) == (0, [], 0.0, {})
    assert post(fake, body(wav(16000, 0.2))).status_code == 200


def test_slow_uplink_and_cut_uploads() -> None:
    payload = body(pcm(16000, 1.0), encoding="LINEAR16", sampleRateHertz=16000)  # ~43 kB of JSON
    with FakeGoogle(read_rate_bps=100_000) as fake:
        started = time.monotonic()
        assert post(fake, payload).ok
        assert time.monotonic() - started >= 0.35
    with FakeGoogle(drop_after_bytes=100) as fake:
        with pytest.raises(requests.ConnectionError):
            post(fake, payload)
        assert len(fake.requests[0].body) == 100
