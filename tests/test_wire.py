"""Google v1 JSON: the request body, multi-result answers, google.rpc.Status errors."""
from __future__ import annotations

import base64

import pytest

from ovos_stt_plugin_google_apikey import errors
from ovos_stt_plugin_google_apikey.settings import Settings
from ovos_stt_plugin_google_apikey.wire import (
    Alternative,
    body_chunks,
    build_recognize_body,
    dump_body,
    parse_duration,
    parse_error,
    parse_response,
)


def test_body_fields():
    settings = Settings.from_mapping({"phrases": ["Mycroft"], "boost": 10, "use_enhanced": True,
                                      "profanity_filter": True, "max_alternatives": 4}, env={})
    pcm = b"\x01\x00\x02\x00"
    body = build_recognize_body(pcm, "en-US", sample_rate=8000, model="latest_short",
                                alternative_languages=["pt-PT"], **settings.body_options())
    assert body == {"config": {
        "encoding": "LINEAR16", "sampleRateHertz": 8000, "languageCode": "en-US",
        "maxAlternatives": 4, "enableAutomaticPunctuation": True, "profanityFilter": True,
        "alternativeLanguageCodes": ["pt-PT"], "model": "latest_short", "useEnhanced": True,
        "speechContexts": [{"phrases": ["Mycroft"], "boost": 10}]},
        "audio": {"content": base64.b64encode(pcm)}}        # ASCII bytes, sent as they are


def test_body_leaves_out_unset_options():
    body = build_recognize_body(b"", "en-US", encoding="FLAC", **Settings().body_options())
    assert body["config"]["encoding"] == "FLAC"
    assert not {"model", "useEnhanced", "speechContexts", "alternativeLanguageCodes"} & set(body["config"])


def test_no_speech_shapes():
    for payload in ({}, {"totalBilledTime": "0s", "requestId": "1"}, {"results": []},
                    {"results": [{"alternatives": [{"transcript": ""}]}]}):
        t = parse_response(payload)
        assert t.alternatives == () and t.text == ""


def test_all_results_are_joined_in_order():
    payload = {"results": [
        {"alternatives": [{"transcript": "turn on the", "confidence": 0.9},
                          {"transcript": "turn of the"}], "languageCode": "en-us"},
        {"alternatives": [{"transcript": " kitchen lights", "confidence": 0.7}]},
        {"alternatives": [{"transcript": "please", "confidence": 0.8}]},
    ]}
    t = parse_response(payload)
    assert t.text == "turn on the kitchen lights please"
    assert t.alternatives[0] == Alternative("turn on the kitchen lights please", pytest.approx(0.8))
    # The second hypothesis of result 1 with the best of the others; confidence unknown.
    assert t.alternatives[1] == Alternative("turn of the kitchen lights please", None)
    assert t.language == "en-us"


def test_zero_or_missing_confidence_is_unknown_not_zero():
    t = parse_response({"results": [{"alternatives": [{"transcript": "a", "confidence": 0.0},
                                                      {"transcript": "b"}]}]})
    assert [a.confidence for a in t.alternatives] == [None, None]


def test_languages_without_spaces_are_joined_without_them():
    t = parse_response({"results": [{"alternatives": [{"transcript": "打开"}], "languageCode": "cmn-hans-cn"},
                                    {"alternatives": [{"transcript": "灯"}]}]})
    assert t.text == "打开灯"


@pytest.mark.parametrize("payload", [{"results": "oops"}, {"results": [{"alternatives": {"x": 1}}]},
                                     {"results": [{"alternatives": [{"transcript": 5}]}]}, []])
def test_unexpected_shapes_are_unavailable_errors(payload):
    with pytest.raises(errors.UnavailableError, match="unexpected shape"):
        parse_response(payload)


def _status(code, message, status, reason=None, extra=()):
    details = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason,
                "domain": "googleapis.com"}] if reason else []
    return {"error": {"code": code, "message": message, "status": status, "details": details + list(extra)}}


@pytest.mark.parametrize("status,body,cls,advice", [
    (400, _status(400, "API key not valid. Please pass a valid API key.", "INVALID_ARGUMENT", "API_KEY_INVALID"),
     errors.InvalidKeyError, "apis/credentials"),
    (403, _status(403, "Method doesn't allow unregistered callers (callers without established identity).",
                  "PERMISSION_DENIED"), errors.InvalidKeyError, "GOOGLE_STT_API_KEY"),
    (403, _status(403, "Cloud Speech-to-Text API has not been used in project 123 before or it is disabled.",
                  "PERMISSION_DENIED", "SERVICE_DISABLED"), errors.APINotEnabledError, "enable the Cloud Speech-to-Text API"),
    (403, _status(403, "Billing", "PERMISSION_DENIED", "BILLING_DISABLED"), errors.APINotEnabledError, "billing"),
    (403, _status(403, "Requests to this API speech.googleapis.com method google.cloud.speech.v1.Speech.Recognize are blocked.",
                  "PERMISSION_DENIED", "API_KEY_SERVICE_BLOCKED"), errors.KeyRestrictedError, "API restrictions"),
    (403, _status(403, "blocked", "PERMISSION_DENIED", "API_KEY_IP_ADDRESS_BLOCKED"), errors.KeyRestrictedError, "application restrictions"),
    (401, _status(401, "API keys are not supported by this API. Expected OAuth2 access token", "UNAUTHENTICATED",
                  "CREDENTIALS_MISSING"), errors.KeyTypeError, "standard API key"),
    (429, _status(429, "Quota exceeded for quota metric", "RESOURCE_EXHAUSTED", "RATE_LIMIT_EXCEEDED"),
     errors.QuotaError, "quotas"),
    (400, _status(400, "Invalid recognition 'config': The requested model is currently not supported for language : iw-IL.",
                  "INVALID_ARGUMENT"), errors.ModelNotSupportedError, "'model'"),
    (400, _status(400, "Sync input too long.", "INVALID_ARGUMENT"), errors.RequestRejectedError, "audio format"),
    (500, _status(500, "Internal error encountered.", "INTERNAL"), errors.UnavailableError, "try again"),
    (503, _status(503, "The service is currently unavailable.", "UNAVAILABLE"), errors.UnavailableError, "try again"),
    (504, _status(504, "Deadline exceeded.", "DEADLINE_EXCEEDED"), errors.DeadlineError, "timeout"),
    (502, None, errors.UnavailableError, "not a Google error body"),
    (404, "<html>nope</html>", errors.EndpointError, "check 'endpoint'"),
    (404, _status(404, "Method not found.", "NOT_FOUND"), errors.EndpointError, "the plugin appends /v1/speech:recognize"),
])
def test_errors_are_typed_and_say_what_to_do(status, body, cls, advice):
    err = parse_error(status, body)
    assert type(err) is cls
    assert advice in str(err)
    assert err.status == status


def test_retry_info_and_secret_scrubbing():
    body = _status(429, "Quota for key SECRET-1 exceeded", "RESOURCE_EXHAUSTED", "RATE_LIMIT_EXCEEDED",
                   extra=[{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "2.5s"}])
    err = parse_error(429, body, ["SECRET-1"])
    assert err.retry_after == 2.5
    assert "SECRET-1" not in str(err) and "SECRET-1" not in err.google_message


def test_google_message_ending_in_a_period_is_not_doubled():
    body = _status(400, "API key not valid. Please pass a valid API key.", "INVALID_ARGUMENT", "API_KEY_INVALID")
    text = str(parse_error(400, body))
    assert "Please pass a valid API key. To fix:" in text and ".." not in text


def test_the_secret_is_scrubbed_from_every_field():
    secret = "MARKER-wire-secret-42"
    body = {"error": {"code": 403, "message": f"bad {secret}", "status": f"PERMISSION_{secret}",
                      "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": f"R_{secret}"},
                                  {"@type": "type.googleapis.com/google.rpc.Help", "links": [{"url": secret}]}]}}
    err = parse_error(403, body, [secret])
    for shown in (str(err), repr(err), err.reason, err.google_message):
        assert secret not in shown
    quoted = parse_error(403, _status(403, "see https://x/?k=MARKER%2Bplus", "PERMISSION_DENIED"), ["MARKER+plus"])
    assert "MARKER" not in str(quoted)


@pytest.mark.parametrize("error", [
    {"code": 403, "message": {"nested": ["x"] * 3}, "status": 5, "details": "no"},
    {"code": 403, "message": None, "status": ["PERMISSION_DENIED"], "details": [1, None, {"@type": 7}]},
    {"code": 403, "message": "line one\r\nline two\x1b[31m" + "x" * 5000, "status": "A\nB"},
])
def test_mistyped_error_fields_are_ignored_or_made_safe(error):
    err = parse_error(403, {"error": error})
    assert isinstance(err, errors.CredentialsError)
    for shown in (str(err), err.reason, err.google_message):
        assert shown.isprintable() and len(shown) < 1200


def test_parse_duration():
    assert parse_duration("1.770s") == 1.77
    assert parse_duration("30") == 30.0
    assert parse_duration("Wed, 21 Oct 2015 07:28:00 GMT") is None
    assert parse_duration(None) is None


@pytest.mark.parametrize("hint", ["inf", "Infinity", "nan", "-5", "1e999", "1e308s", True, [1], {"s": 1}, "9" * 400])
def test_retry_hints_are_finite_and_bounded(hint):
    seconds = parse_duration(hint)
    assert seconds is None or 0 <= seconds <= 3600


@pytest.mark.parametrize("confidence,expected", [
    (0.9, 0.9), ("0.9", 0.9), (1, 1.0), (float("inf"), None), (float("nan"), None), (-5, None),
    (1.5, None), (True, None), ("high", None), ([0.9], None), (None, None), (0, None),
])
def test_confidences_are_numbers_in_range_or_absent(confidence, expected):
    t = parse_response({"results": [{"alternatives": [{"transcript": "hi", "confidence": confidence}]}]})
    assert t.alternatives[0].confidence == (pytest.approx(expected) if expected is not None else None)


@pytest.mark.parametrize("code", [5, None, ["en-us"], {"x": 1}, "", "en us; rm -rf", "x" * 100])
def test_language_codes_that_are_not_tags_are_ignored(code):
    t = parse_response({"results": [{"alternatives": [{"transcript": "hi"}], "languageCode": code}]})
    assert t.text == "hi" and t.language is None


@pytest.mark.parametrize("payload", [
    {"results": [None]}, {"results": [{"alternatives": [None]}]}, {"results": {"a": 1}},
    {"results": [{"alternatives": "text"}]}, "results", 5, None,
])
def test_mistyped_answers_are_unavailable_errors(payload):
    with pytest.raises(errors.UnavailableError):
        parse_response(payload)


def test_dump_body_is_the_same_json_as_json_dumps():
    import json
    settings = Settings.from_mapping({"phrases": ['say "content":"" aloud', "ünïcode"]}, env={})
    body = build_recognize_body(bytes(range(256)) * 7, "en-US", alternative_languages=["pt-PT"],
                                **settings.body_options())
    as_json = {**body, "audio": {"content": body["audio"]["content"].decode("ascii")}}
    assert dump_body(body) == json.dumps(as_json, separators=(",", ":")).encode()
    assert json.loads(dump_body(body)) == as_json
    assert dump_body(as_json) == dump_body(body)              # a hand-made body's str content too
    head, content, tail = body_chunks(body)
    assert content is body["audio"]["content"]               # the base64 is not copied
    assert head + content + tail == dump_body(body)


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
                     lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(st.sampled_from(["results", "alternatives", "transcript", "confidence",
                                                        "languageCode", "x"]), inner, max_size=4),
                     max_leaves=30)


@settings(max_examples=500, derandomize=True, deadline=None)
@given(_JSON)
def test_any_json_answer_is_a_valid_transcript_or_unavailable(payload):
    try:
        t = parse_response(payload)
    except errors.UnavailableError:
        return
    assert t.language is None or isinstance(t.language, str)
    for alt in t.alternatives:
        assert isinstance(alt.text, str)
        assert alt.confidence is None or (isinstance(alt.confidence, float) and 0 < alt.confidence <= 1)


@settings(max_examples=300, derandomize=True, deadline=None)
@given(st.integers(100, 599), _JSON)
def test_any_error_answer_is_an_api_error(status, payload):
    err = parse_error(status, {"error": payload} if isinstance(payload, dict) else payload, ["SECRET"])
    assert isinstance(err, errors.APIError) and str(err).isprintable()


def test_a_200_holding_an_error_is_not_no_speech():
    with pytest.raises(errors.UnavailableError, match="'error'"):
        parse_response({"error": {"code": 403, "message": "denied"}})


CLIPS = "[bytes(range(256))[:n] for n in range(7)] + [bytes(range(256)) * 7500]"
BODIES = "b'|'.join(dump_body(build_recognize_body(c, 'en-US', **Settings().body_options())) for c in CLIPS)"


def test_the_audio_is_the_same_base64_with_or_without_pybase64():
    """pybase64 (the [server] extra) only speeds the encoding up: in a Python where it cannot
    be imported, the stdlib's base64 makes the same bodies, byte for byte (every length modulo
    3, and a 60 s clip)."""
    import subprocess
    import sys

    from ovos_stt_plugin_google_apikey import wire
    pytest.importorskip("pybase64")
    assert wire.b64encode.__module__.startswith("pybase64")
    script = "\n".join([
        "import sys, base64; sys.modules['pybase64'] = None    # import pybase64: ImportError",
        "from ovos_stt_plugin_google_apikey import wire",
        "from ovos_stt_plugin_google_apikey.wire import build_recognize_body, dump_body",
        "from ovos_stt_plugin_google_apikey.settings import Settings",
        "assert wire.b64encode is base64.b64encode",
        f"CLIPS = {CLIPS}",
        f"sys.stdout.buffer.write({BODIES})"])
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    assert out.returncode == 0, out.stderr.decode()
    clips = [bytes(range(256))[:n] for n in range(7)] + [bytes(range(256)) * 7500]
    fast = b"|".join(dump_body(build_recognize_body(c, "en-US", **Settings().body_options())) for c in clips)
    assert out.stdout == fast
