"""What the server takes (issue 10 points 3-6, issue 12 point 5), over real sockets on loopback:
the audio budget against bombs, decoding off the event loop, refusals for what is not audio,
WAVs as recorders write them."""
from __future__ import annotations

import asyncio
import base64
import io
import struct
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from audio_samples import tone, wav
from test_audio import riff
from test_server import HEARD, SPEECH, running

from ovos_stt_plugin_google_apikey import cli, decoding
from ovos_stt_plugin_google_apikey.server import create_app, uploads

soundfile = pytest.importorskip("soundfile")          # the [flac] extra: FLAC/Ogg bombs
np = pytest.importorskip("numpy")

CURL_HINTS = ("--data-binary @file", "-F audio=@file")


def compressed(seconds: float, fmt: str, subtype: str, rate: int = 16000, channels: int = 1) -> bytes:
    """Silence written a block at a time (the whole array of 2 h would itself be 230 MB)."""
    buffer = io.BytesIO()
    block = np.zeros((rate * 10, channels), dtype=np.int16)
    with soundfile.SoundFile(buffer, "w", rate, channels, format=fmt, subtype=subtype) as out:
        for _ in range(int(seconds // 10)):
            out.write(block)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def flac_bomb():
    return compressed(2 * 3600, "FLAC", "PCM_16", 44100, 2)        # 2 h of stereo CD silence


@pytest.fixture(scope="module")
def opus_bomb():
    return compressed(600, "OGG", "OPUS", 48000)                    # 10 min: 5x the default budget


@pytest.fixture
def url(engine):
    with running(create_app(engine)) as base:
        yield base


def post(url: str, path: str = "/stt", **kwargs) -> requests.Response:
    return requests.post(url + path, timeout=30, **kwargs)


# ---------------------------------------------------------------- the budget (point 3)

def test_flac_bomb_is_413_from_its_header_and_nothing_reaches_google(url, fake, flac_bomb):
    assert len(flac_bomb) < 3_000_000
    reply = post(url, data=flac_bomb, headers={"Content-Type": "audio/flac"})
    assert reply.status_code == 413, reply.text
    assert "7200.0 s, over the limit of 120 s" in reply.text and "--max-audio-seconds" in reply.text
    assert fake.requests == []


def test_ogg_opus_bomb_is_413_and_nothing_reaches_google(url, fake, opus_bomb):
    reply = post(url, data=opus_bomb, headers={"Content-Type": "audio/ogg"})
    assert reply.status_code == 413, reply.text
    assert "600.0 s" in reply.text
    assert fake.requests == []


def test_amplified_raw_pcm_is_413_from_its_arithmetic(url, fake):
    # 10 MB declared as 1000 Hz 8-bit: 10,000 s of audio, 191 Google requests before the budget.
    body = bytes(range(256)) * (10 * 1024 * 1024 // 256 - 64)
    reply = post(url, data=body, params={"sample_rate": 1000, "sample_width": 1})
    assert reply.status_code == 413, reply.text
    assert "over the limit of 120 s" in reply.text
    assert fake.requests == []


def test_flac_of_unknown_length_is_cut_off_while_decoding(engine, fake):
    blob = bytearray(compressed(60, "FLAC", "PCM_16"))
    blob[18:26] = (int.from_bytes(blob[18:26], "big") & ~((1 << 36) - 1)).to_bytes(8, "big")
    with running(create_app(engine, max_audio_seconds=5)) as base:
        reply = post(base, data=bytes(blob))
    assert reply.status_code == 413 and "more than 5 s" in reply.text
    assert fake.requests == []


def test_the_budget_is_configurable_and_audio_within_it_is_sent(engine, fake):
    with running(create_app(engine, max_audio_seconds=2)) as base:
        within = post(base, data=wav(tone(2.0)))
        over = post(base, data=wav(tone(2.5)))
        over_json = post(base, "/stt/json", json={"audio_b64": base64.b64encode(tone(2.5)).decode()})
        over_detect = post(base, "/lang_detect", params={"valid_langs": "en-US,de-DE"}, data=wav(tone(2.5)))
    assert (within.status_code, within.text) == (200, "audio 2.00 seconds at 16000 hertz")
    assert over.status_code == 413 and "2.5 s, over the limit of 2 s" in over.text
    assert over_json.status_code == 413 and "over the limit" in over_json.json()["error"]
    assert over_detect.status_code == 413
    assert len(fake.requests) == 1


def test_four_bombs_at_once_are_all_refused(url, fake, flac_bomb, opus_bomb):
    bodies = [flac_bomb, opus_bomb, flac_bomb, opus_bomb]
    with ThreadPoolExecutor(4) as pool:
        replies = list(pool.map(lambda body: post(url, data=body), bodies))
    assert [r.status_code for r in replies] == [413] * 4
    assert fake.requests == []


def test_bad_budget_settings_fail_at_start(engine):
    for bad in (0, -1, float("nan")):
        with pytest.raises(ValueError, match="--max-audio-seconds"):
            create_app(engine, max_audio_seconds=bad)
    parser = cli.build_parser()
    assert parser.parse_args(["serve"]).max_audio_seconds == 120.0
    assert parser.parse_args(["serve", "--max-audio-seconds", "30"]).max_audio_seconds == 30.0
    with pytest.raises(SystemExit):
        parser.parse_args(["serve", "--max-audio-seconds", "0"])


# ---------------------------------------------------------------- off the event loop (point 4)

def test_status_answers_while_an_upload_decodes(engine, fake):
    # A 200 s Opus upload takes seconds of CPU to decode. Were decoding on the event loop,
    # /status could answer only around it (while the body arrives, while Google answers); off
    # the loop it answers all along. No time is measured: the count tells the two apart.
    body = compressed(200, "OGG", "OPUS", 48000)
    with running(create_app(engine, max_audio_seconds=600)) as base, ThreadPoolExecutor(1) as pool:
        upload = pool.submit(post, base, data=body)
        answered = 0
        while not upload.done():
            assert requests.get(base + "/status", timeout=20).status_code == 200
            answered += not upload.done()
        assert upload.result().status_code == 200
    assert answered >= 25         # here: ~270 off the loop, 9 when decoding ran on it


def float_wav(seconds: float) -> bytes:
    """A 32-bit float WAV of a quiet ramp: Python's own loop converts it when numpy is absent."""
    count = int(seconds * 16000)
    return riff(3, 1, 16000, 32, struct.pack(f"<{count}f", *(i / count / 2 for i in range(count))))


def b64(data: bytes) -> dict:
    return {"json": {"audio_b64": base64.b64encode(data).decode()}}


# What runs where: "decode" is decoding.decode, "parse" a /stt/json body's JSON and base64.
@pytest.mark.parametrize("kwargs, where", [
    ({"data": SPEECH}, ["decode on the loop"]),                                   # a copy
    ({"data": tone(1.0), "params": {"sample_rate": 16000}}, ["decode on the loop"]),   # raw PCM
    ({"data": riff(7, 1, 16000, 8, b"\xff" * 16000)}, ["decode on the loop"]),    # 16 KB of mu-law
    # 8-bit, A-law and mu-law grow to twice their size: 0.7 ms for 1 MiB, inline up to 256 KiB
    ({"data": riff(7, 1, 16000, 8, b"\xff" * 300_000)}, ["decode on a thread"]),
    ({"data": riff(1, 1, 16000, 8, b"\x80" * 300_000)}, ["decode on a thread"]),
    ({"data": float_wav(1.0)}, ["decode on a thread"]),
    ({"files": {"audio": ("f.wav", float_wav(1.0), "audio/wav")}}, ["decode on a thread"]),
    ({"data": wav(tone(33.0))}, ["decode on a thread"]),                        # past 1 MiB
    (b64(SPEECH), ["parse on the loop", "decode on the loop"]),                 # 43 KB of JSON
    (b64(wav(tone(3.0))), ["parse on a thread", "decode on the loop"]),         # past 64 KiB
    (b64(float_wav(1.0)), ["parse on a thread", "decode on a thread"]),
    (b64(compressed(10, "FLAC", "PCM_16")), ["parse on the loop", "decode on a thread"]),
])
def test_only_quick_work_runs_on_the_event_loop(engine, fake, monkeypatch, kwargs, where):
    # A float WAV under 1 MiB once went through the loop (184 ms of Python without numpy),
    # and so did a /stt/json body's audio in any format, with its JSON (8 ms for 1 MiB): every
    # other client waited. Where each runs is seen from inside it: the loop's thread has a
    # running event loop, a worker thread none.
    ran = []

    def spy(name, real):
        def spied(*args, **kw):
            try:
                asyncio.get_running_loop()
                ran.append(f"{name} on the loop")
            except RuntimeError:
                ran.append(f"{name} on a thread")
            return real(*args, **kw)
        return spied

    monkeypatch.setattr(decoding, "decode", spy("decode", decoding.decode))
    monkeypatch.setattr(uploads, "_json_audio", spy("parse", uploads._json_audio))
    path = "/stt/json" if "json" in kwargs else "/stt"
    with running(create_app(engine)) as base:
        reply = post(base, path, **kwargs)
    assert reply.status_code == 200, reply.text
    assert ran == where


def test_a_million_empty_chunks_is_answered_without_a_long_walk(url, fake):
    body = riff(1, 1, 16000, 16, tone(0.1), before_data=b"JUNK\0\0\0\0" * 1_000_000)
    reply = post(url, data=body)
    assert reply.status_code == 400 and "more than 64 chunks" in reply.text
    assert fake.requests == []


# ---------------------------------------------------------------- what is not audio (point 5)

README_TEXT = "# ovos-stt-plugin-google-apikey\n\nAn OVOS STT plugin.\n\n| a | b |\n".encode() * 20


@pytest.mark.parametrize("kwargs, says", [
    ({"files": {"audio": ("README.md", README_TEXT, "text/markdown")}}, "text/markdown body is not audio"),
    ({"files": {"audio": ("README.md", README_TEXT, "application/octet-stream")}}, "text, not audio"),
    ({"data": b"hello world"}, "not a whole number of 16-bit samples"),
    ({"data": b"hello world!"}, "text, not audio"),
    ({"data": b"<!doctype html><p>hi</p>", "headers": {"Content-Type": "text/html"}}, "text/html"),
    ({"json": {"audio": "x"}}, "application/json body is not audio"),
    ({"data": tone(0.5) + b"\x01", "params": {"sample_rate": 16000}}, "not a whole number"),
])
def test_what_is_not_audio_is_415_saying_what_to_send(url, fake, kwargs, says):
    reply = post(url, **kwargs)
    assert reply.status_code == 415, reply.text
    assert says in reply.text and "send" in reply.text and reply.text.count("\n") == 1
    assert fake.requests == []


def test_curl_d_form_encoded_bodies_are_415_naming_both_curl_forms(url, fake):
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    # curl -d @speech.wav strips CR and LF bytes: the RIFF sizes no longer add up.
    mangled = post(url, data=SPEECH.replace(b"\n", b"").replace(b"\r", b""), headers=form)
    text = post(url, data=b"hello=world", headers=form)
    for reply in (mangled, text):
        assert reply.status_code == 415, reply.text
        assert all(hint in reply.text for hint in CURL_HINTS)
    assert fake.requests == []


def test_mp3_is_decoded(url, fake, tmp_path):
    if "MP3" not in soundfile.available_formats():
        reply = post(url, data=b"ID3\x04" + bytes(300))
        assert reply.status_code == 415 and "MP3 needs libsndfile 1.1" in reply.text
        return
    soundfile.write(tmp_path / "a.mp3", np.frombuffer(tone(1.0), "<i2"), 16000, format="MP3")
    reply = post(url, data=(tmp_path / "a.mp3").read_bytes(), headers={"Content-Type": "audio/mpeg"})
    assert reply.status_code == 200 and reply.text.endswith("seconds at 16000 hertz")
    assert len(fake.requests) == 1


def test_an_untagged_mp3_sent_unlabelled_is_still_mp3(url, fake, tmp_path):
    """No ID3 tag, no Content-Type (requests.post(url, data=mp3)): its Xing tag tells it from
    raw PCM, so a 1 h MP3 is a 413 from its header, not an hour of noise sent to Google."""
    if "MP3" not in soundfile.available_formats():
        pytest.skip("libsndfile without MP3")
    soundfile.write(tmp_path / "a.mp3", np.frombuffer(tone(1.0), "<i2"), 16000, format="MP3")
    mp3 = (tmp_path / "a.mp3").read_bytes()
    assert mp3[:3] != b"ID3"
    assert post(url, data=mp3).text.endswith("seconds at 16000 hertz")
    hour = compressed(3600, "MP3", "MPEG_LAYER_III")
    assert hour[:3] != b"ID3"
    reply = post(url, data=hour)
    assert reply.status_code == 413, reply.text
    assert len(fake.requests) == 1


def test_raw_pcm_stays_accepted_where_clients_send_it(url, fake):
    pcm = tone(1.0)
    bare = post(url, data=pcm)                                   # requests.post(url, data=pcm)
    typed = post(url, data=pcm, headers={"Content-Type": "audio/L16; rate=16000"})
    octets = post(url, data=pcm, headers={"Content-Type": "application/octet-stream"})
    # curl --data-binary @speech.raw '...?sample_rate=8000&sample_width=2' (form-encoded type)
    curl = post(url, data=tone(1.0, 8000), params={"sample_rate": 8000, "sample_width": 2},
                headers={"Content-Type": "application/x-www-form-urlencoded"})
    # the released ovos-stt-plugin-server client: a WAV labelled audio/wav
    ovos = post(url, data=SPEECH, headers={"Content-Type": "audio/wav"})
    # curl --data-binary @speech.wav: an intact file under curl's form-encoded label
    curl_wav = post(url, data=SPEECH, headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert [r.text for r in (bare, typed, octets, ovos, curl_wav)] == [HEARD] * 5
    assert curl.text == "audio 1.00 seconds at 8000 hertz"
    assert len(fake.requests) == 6


def test_stt_json_refuses_text_as_audio(url, fake):
    reply = post(url, "/stt/json", json={"audio_b64": base64.b64encode(b"hello world, twice!!").decode()})
    assert reply.status_code == 415 and "text, not audio" in reply.json()["error"]
    odd = post(url, "/stt/json", json={"audio_b64": base64.b64encode(tone(0.5) + b"x").decode()})
    assert odd.status_code == 415 and "whole number" in odd.json()["error"]
    assert fake.requests == []


# ---------------------------------------------------------------- /lang_detect (point 6)

def test_lang_detect_reads_the_audio_even_with_one_candidate(url, fake):
    one = {"valid_langs": "el-GR"}
    good = post(url, "/lang_detect", params=one, data=SPEECH)
    empty = post(url, "/lang_detect", params=one, data=b"")
    text = post(url, "/lang_detect", params=one, data=b"hello world!")
    broken = post(url, "/lang_detect", params=one, data=b"RIFF1234WAVEjunk")
    assert (good.status_code, good.json()) == (200, {"lang": "el-GR", "conf": 1.0})
    assert empty.status_code == 400 and "no audio" in empty.json()["error"]
    assert text.status_code == 415 and "text" in text.json()["error"]
    assert broken.status_code == 400 and "WAV" in broken.json()["error"]
    assert fake.requests == []               # one candidate: nothing to ask Google


# ---------------------------------------------------------------- recorders' WAVs (issue 12 point 5)

@pytest.mark.parametrize("name, body, heard", [
    ("extensible 24-bit stereo", riff(1, 2, 48000, 24, tone(0.5, 48000, 3, 2), extensible=True),
     "audio 0.50 seconds at 48000 hertz"),
    ("float 32", riff(3, 1, 22050, 32, struct.pack("<11025f", *([0.25, -0.25] * 5512 + [0.0]))),
     "audio 0.50 seconds at 22050 hertz"),
    ("mu-law", riff(7, 1, 8000, 8, b"\x0f\x8f" * 2000), "audio 0.50 seconds at 8000 hertz"),
    ("A-law with a LIST chunk", riff(6, 1, 8000, 8, b"\x2a\xaa" * 2000,
                                     before_data=b"LIST\x04\x00\x00\x00INFO"), "audio 0.50 seconds at 8000 hertz"),
])
def test_recorder_wavs_are_transcribed(url, fake, name, body, heard):
    reply = post(url, data=body, headers={"Content-Type": "audio/wav"})
    assert (reply.status_code, reply.text) == (200, heard), name
    assert fake.requests[-1].json["config"]["encoding"] == "LINEAR16"


# ---------------------------------------------------------------- found by an attacker's audit

def test_a_flac_of_absurd_rate_and_channels_is_cut_off_by_its_samples(url, fake):
    """655 kHz, 8 channels, length unknown: the budget counts samples (48 kHz stereo's worth),
    so it is refused after decoding ~3 s of it rather than 120 s (7 s of CPU before)."""
    rate, channels = 655350, 8
    buffer = io.BytesIO()
    with soundfile.SoundFile(buffer, "w", rate, channels, format="FLAC", subtype="PCM_16") as out:
        block = np.zeros((rate, channels), dtype=np.int16)
        for _ in range(130):
            out.write(block)
    blob = bytearray(buffer.getvalue())
    blob[18:26] = (int.from_bytes(blob[18:26], "big") & ~((1 << 36) - 1)).to_bytes(8, "big")
    reply = post(url, data=bytes(blob))
    assert reply.status_code == 413 and "more samples than 120 s of 48 kHz stereo" in reply.text
    assert fake.requests == []


@pytest.mark.parametrize("fmt", ["RF64", "W64", "AU", "CAF", "NIST"])
def test_other_containers_recorders_write_are_decoded(url, fake, fmt):
    buffer = io.BytesIO()
    soundfile.write(buffer, np.frombuffer(tone(1.0, 22050), "<i2"), 22050, format=fmt, subtype="PCM_16")
    reply = post(url, data=buffer.getvalue())                     # no Content-Type: by its header
    assert (reply.status_code, reply.text) == (200, "audio 1.00 seconds at 22050 hertz")


@pytest.mark.parametrize("kwargs, says", [
    # Windows-1252 text: nearly all printable ASCII (PCM never is: its quiet samples are NUL
    # or 0xFF bytes); text that is mostly accented letters is not caught by this rule.
    ({"data": ("Notes from Tuesday: the caf\xe9 opens at nine, the d\xe9cor is done. " * 20).encode("cp1252")},
     "text, not audio"),
    ({"data": ("hello world " * 40).encode("utf-16")}, "text, not audio"),
    ({"data": b"\x89PNG\r\n\x1a\n" + bytes(200), "params": {"sample_rate": 16000}}, "a PNG image"),
    ({"data": b"RIFF\x10\x00\x00\x00WEBPVP8 " + bytes(100)}, "RIFF 'WEBP' file, not WAV audio"),
])
def test_more_that_is_not_audio_is_415(url, fake, kwargs, says):
    reply = post(url, **kwargs)
    assert reply.status_code == 415 and says in reply.text, reply.text
    assert fake.requests == []


def test_raw_pcm_parameters_of_zero_are_refused_not_taken_as_defaults(url, fake):
    for params in ({"sample_rate": 0}, {"sample_width": 0}):
        reply = post(url, data=tone(0.5), params=params)
        assert reply.status_code == 400 and "not" in reply.text, (params, reply.text)
    reply = post(url, "/stt/json", json={"audio_b64": base64.b64encode(tone(0.5)).decode(), "sample_rate": 0})
    assert reply.status_code == 400
    assert fake.requests == []


def test_the_form_hint_says_how_to_send_raw_pcm(url, fake):
    reply = post(url, data=tone(0.5), headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert reply.status_code == 415 and "?sample_rate=16000&sample_width=2" in reply.text
    assert fake.requests == []


def test_lang_detect_candidates_are_languages_and_may_be_repeated(url, fake):
    auto = post(url, "/lang_detect", params={"valid_langs": "auto,en-US"}, data=SPEECH)
    assert auto.status_code == 400 and "'auto' is not one" in auto.json()["error"]
    assert fake.requests == []
    both = post(url, "/lang_detect", params=[("valid_langs", "en-US"), ("valid_langs", "pt-PT")], data=SPEECH)
    assert both.status_code == 200
    sent = fake.requests[-1].json["config"]
    assert (sent["languageCode"], sent["alternativeLanguageCodes"]) == ("en-US", ["pt-PT"])


def test_stt_json_takes_base64_wrapped_in_lines(url, fake):
    wrapped = base64.encodebytes(SPEECH).decode()                 # what `base64 file` prints
    assert "\n" in wrapped.strip()
    reply = post(url, "/stt/json", json={"audio_b64": wrapped})
    assert reply.status_code == 200 and reply.json()["text"] == HEARD
