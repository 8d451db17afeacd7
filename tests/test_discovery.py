"""The fake is grounded in Google's own description of the API: the discovery document that
google-api-python-client ships, and google-cloud-speech's REST transport (Google's client, API
key and endpoint, enums as numbers) talking to the fake. Every body the plugin builds validates
against that schema; the fake refuses what the schema refuses."""
from __future__ import annotations

import base64
import json

import discovery
import pytest
import requests
from audio_samples import silence, tone
from fake_google import AudioInfo, FakeGoogle, default_recognizer

from ovos_stt_plugin_google_apikey import encoders
from ovos_stt_plugin_google_apikey.audio import PCM
from ovos_stt_plugin_google_apikey.plugin import GoogleAPIKeySTT
from ovos_stt_plugin_google_apikey.settings import MODELS, Settings
from ovos_stt_plugin_google_apikey.wire import build_recognize_body, dump_body

KEY = "test-key"


def test_the_document_is_googles_speech_v1():
    doc = discovery.document()
    method = doc["resources"]["speech"]["methods"]["recognize"]
    assert (doc["name"], doc["version"], doc["rootUrl"]) == ("speech", "v1", "https://speech.googleapis.com/")
    assert (method["path"], method["httpMethod"]) == ("v1/speech:recognize", "POST")
    assert method["request"]["$ref"] == "RecognizeRequest" and method["response"]["$ref"] == "RecognizeResponse"


# ------------------------------------------------------------- what the plugin sends

SETTINGS = [
    {},
    {"model": None, "punctuation": False, "profanity_filter": True},
    {"use_enhanced": True, "max_alternatives": 30, "phrases": ["Mycroft", "$MONTH"], "boost": 20},
    {"phrases": ["OpenVoiceOS"], "max_alternatives": 1},
    *({"model": model} for model in MODELS),
]


@pytest.mark.parametrize("config", SETTINGS, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()) or "defaults")
@pytest.mark.parametrize("encoding", ["linear16", "flac", "ogg_opus"])
def test_every_body_the_plugin_builds_validates(config, encoding):
    settings = Settings.from_mapping({**config, "encoding": encoding}, env={})
    encoded = encoders.encode(PCM(tone(0.5), 16000, 2), encoding)
    for alternatives in ((), ("pt-PT",), ("pt-PT", "es-ES", "fr-FR")):
        body = build_recognize_body(encoded.data, "en-US", encoding=encoded.encoding,
                                    sample_rate=encoded.sample_rate, model=settings.model,
                                    alternative_languages=alternatives, **settings.body_options())
        assert discovery.problems(json.loads(dump_body(body)), "RecognizeRequest") == []


def test_what_the_plugin_sent_over_http_validates(make_engine, fake):
    engine = make_engine(phrases=["Mycroft"], boost=5, use_enhanced=True, auto_languages=[
        "en-US", "pt-PT", "es-ES", "fr-FR", "de-DE"])
    engine.execute(tone(1.0))
    engine.execute(tone(70.0))                                     # two parts in parallel
    engine.detect_language(tone(1.0), ["en-US", "pt-PT", "es-ES", "fr-FR", "de-DE"])
    streaming = make_engine("ovos-stt-plugin-google-apikey-streaming")
    streaming.stream_start()
    for _ in range(10):
        streaming.stream_data(tone(0.1))
    streaming.transcribe()
    assert any(r.chunked for r in fake.requests) and len(fake.requests) >= 6
    for recorded in fake.requests:
        assert discovery.problems(json.loads(recorded.body), "RecognizeRequest") == []


# ------------------------------------------------------------- the fake refuses what the schema refuses

def wrong_values(spec: dict) -> list:
    """Values of the wrong type for a field described by ``spec``."""
    if "$ref" in spec:
        return ["text", 5, [1]]
    kind = spec.get("type")
    if kind == "array":
        return ["text", {"a": 1}] + [[v] for v in wrong_values(spec["items"])[:1]]
    if "enum" in spec:
        return ["NOT_A_VALUE", 99, True]
    if kind == "boolean":
        return ["true", 1, [True]]
    if kind == "integer":
        return ["sixteen", 1.5, 2**40, True]
    if kind == "number":
        return ["high", True, [1.0]]
    return [5, True, {"a": 1}]


def post(fake: FakeGoogle, body) -> requests.Response:
    data = body if isinstance(body, bytes) else json.dumps(body)
    return requests.post(fake.url, data=data, headers={"X-Goog-Api-Key": KEY}, timeout=10)


def valid_body() -> dict:
    return {"config": {"encoding": "LINEAR16", "sampleRateHertz": 16000, "languageCode": "en-US"},
            "audio": {"content": base64.b64encode(silence(0.2)).decode()}}


CONFIG_FIELDS = sorted(discovery.schema("RecognitionConfig")["properties"].items())


@pytest.mark.parametrize("name,spec", CONFIG_FIELDS, ids=[name for name, _ in CONFIG_FIELDS])
def test_the_fake_refuses_every_wrongly_typed_config_field(fake, name, spec):
    for value in wrong_values(spec):
        body = valid_body()
        body["config"][name] = value
        found = discovery.problems(body, "RecognizeRequest")
        assert found, (name, value)                          # the schema refuses it...
        reply = post(fake, body)
        assert reply.status_code == 400, (name, value, reply.text)   # ...and so does the fake
        error = reply.json()["error"]
        assert (error["status"], error["message"]) == ("INVALID_ARGUMENT", found[0])
        assert discovery.snake(name) in error["message"]


@pytest.mark.parametrize("body", [
    {**valid_body(), "extra": 1},
    {"config": {**valid_body()["config"], "sampleRate": 16000}, "audio": valid_body()["audio"]},
    {"config": valid_body()["config"], "audio": {"content": "not base64!"}},
    {"config": valid_body()["config"], "audio": {"content": 5}},
    {"config": valid_body()["config"], "audio": {"content": "AAAA", "unknown": "x"}},
    {"config": {**valid_body()["config"], "speechContexts": [{"phrases": "one"}]}, "audio": valid_body()["audio"]},
    {"config": {**valid_body()["config"], "speechContexts": [{"boost": "lots"}]}, "audio": valid_body()["audio"]},
    {"config": {**valid_body()["config"], "metadata": {"interactionType": "SHOUTING"}}, "audio": valid_body()["audio"]},
    [valid_body()], "text",
])
def test_the_fake_refuses_what_the_schema_refuses(fake, body):
    found = discovery.problems(body, "RecognizeRequest")
    assert found
    reply = post(fake, body)
    assert reply.status_code == 400 and reply.json()["error"]["message"] == found[0]


@pytest.mark.parametrize("change", [
    {"sample_rate_hertz": 16000, "language_code": "en-US"},          # proto field names
    {"sampleRateHertz": "16000", "maxAlternatives": "2"},            # int32 as strings
    {"encoding": 1},                                                 # enums as numbers
    {"model": None, "speechContexts": None, "useEnhanced": False},   # nulls and defaults
    {"speechContexts": [{"phrases": ["Mycroft"], "boost": "2.5"}]},  # a float as a string
])
def test_what_the_schema_accepts_the_fake_accepts(fake, change):
    body = valid_body()
    if "sample_rate_hertz" in change:
        del body["config"]["sampleRateHertz"], body["config"]["languageCode"]
    body["config"].update(change)
    assert discovery.problems(body, "RecognizeRequest") == []
    reply = post(fake, body)
    assert reply.status_code == 200, reply.text


def test_the_fakes_answers_validate_as_recognize_responses():
    for alternatives in (1, 3, 30):
        audio = AudioInfo(16000, 1, 2, 1.5, tone(1.5), "LINEAR16")
        answer = default_recognizer({"config": {"languageCode": "en-US", "maxAlternatives": alternatives}}, audio)
        assert discovery.problems(answer, "RecognizeResponse") == []
    assert discovery.problems({"results": [{"alternatives": [{"confidence": "x"}]}]}, "RecognizeResponse")


# ------------------------------------------------------------- Google's own client against the fake

@pytest.fixture
def google_client(fake):
    from google.api_core.client_options import ClientOptions
    from google.cloud import speech_v1
    return speech_v1, speech_v1.SpeechClient(
        transport="rest", client_options=ClientOptions(api_key=KEY, api_endpoint=fake.endpoint))


def test_googles_client_gets_its_answers_from_the_fake(google_client, fake):
    speech, client = google_client
    config = speech.RecognitionConfig(encoding=speech.RecognitionConfig.AudioEncoding.LINEAR16,
                                      sample_rate_hertz=16000, language_code="pt-PT", max_alternatives=2,
                                      speech_contexts=[speech.SpeechContext(phrases=["Mycroft"], boost=4)])
    response = client.recognize(config=config, audio=speech.RecognitionAudio(content=tone(1.0)), timeout=10)
    top = response.results[0].alternatives[0]
    assert top.transcript == "audio 1.00 seconds at 16000 hertz"
    assert top.confidence == pytest.approx(0.9)
    assert response.results[0].language_code == "pt-pt" and response.total_billed_time.seconds == 1
    assert len(response.results[0].alternatives) == 2
    sent = fake.requests[-1]
    assert sent.query == {"$alt": ["json;enum-encoding=int"]} and sent.headers["X-Goog-Api-Key"] == KEY
    assert sent.json["config"]["encoding"] == 1                     # the enum as a number
    assert discovery.problems(sent.json, "RecognizeRequest") == []


def test_googles_client_hears_no_speech_as_an_empty_response(google_client):
    speech, client = google_client
    config = speech.RecognitionConfig(encoding=1, sample_rate_hertz=16000, language_code="en-US")
    response = client.recognize(config=config, audio=speech.RecognitionAudio(content=silence(0.5)), timeout=10)
    assert list(response.results) == []


@pytest.mark.parametrize("kind,exception,reason", [("invalid", "BadRequest", "API_KEY_INVALID"),
                                                   ("disabled", "Forbidden", "SERVICE_DISABLED"),
                                                   ("restricted", "Forbidden", "API_KEY_SERVICE_BLOCKED"),
                                                   ("key_type", "Unauthorized", "CREDENTIALS_MISSING")])
def test_googles_client_reads_the_fakes_errors(google_client, fake, kind, exception, reason):
    from google.api_core import exceptions
    speech, client = google_client
    fake.key_errors[KEY] = kind
    config = speech.RecognitionConfig(encoding=1, sample_rate_hertz=16000, language_code="en-US")
    with pytest.raises(getattr(exceptions, exception)) as info:
        client.recognize(config=config, audio=speech.RecognitionAudio(content=tone(0.5)), timeout=10)
    assert info.value.reason == reason and info.value.domain == "googleapis.com"


def test_googles_client_and_the_plugin_get_the_same_transcript(google_client, fake):
    speech, client = google_client
    pcm = tone(2.0, rate=8000)
    config = speech.RecognitionConfig(encoding=1, sample_rate_hertz=8000, language_code="en-US")
    theirs = client.recognize(config=config, audio=speech.RecognitionAudio(content=pcm), timeout=10)
    engine = GoogleAPIKeySTT({"key": KEY, "endpoint": fake.endpoint, "lang": "en-US"})
    try:
        ours = engine.execute(PCM(pcm, 8000, 2))
    finally:
        engine.shutdown()
    assert ours == theirs.results[0].alternatives[0].transcript == "audio 2.00 seconds at 8000 hertz"
