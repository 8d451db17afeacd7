"""Phone recordings, browser recordings and programs are not raw PCM (issue 19): the server
answers 415 saying how to convert, the CLI exits 1 saying the same for a file, and nothing
reaches Google. Files are real: headers built by hand as the formats define them, and a real
ELF program (this Python's own)."""
from __future__ import annotations

import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from audio_samples import tone, wav
from test_cli import run
from test_server import HEARD, SPEECH, build_engine, running

from ovos_stt_plugin_google_apikey.server import create_app

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def box(kind: bytes, payload: bytes) -> bytes:
    """An ISO base media box: 32-bit size, 4-byte type, payload."""
    return struct.pack(">I", 8 + len(payload)) + kind + payload


def iso_media(brand: bytes, *compatible: bytes) -> bytes:
    """What a phone recorder writes: ftyp (major brand, minor version, compatible brands),
    then the media data (AAC frames; zeros here: no decoder reads them) and an empty moov."""
    ftyp = box(b"ftyp", brand + struct.pack(">I", 0x200) + b"".join(compatible))
    return ftyp + box(b"mdat", bytes(4000)) + box(b"moov", box(b"mvhd", bytes(100)))


def ebml(doc_type: bytes) -> bytes:
    """A WebM/Matroska file's EBML header (ID 1A45DFA3, DocType 4282) and a Segment."""
    doc = b"\x42\x82" + bytes([0x80 | len(doc_type)]) + doc_type
    header = b"\x1a\x45\xdf\xa3" + bytes([0x80 | len(doc)]) + doc
    return header + b"\x18\x53\x80\x67\x01\xff\xff\xff\xff\xff\xff\xff" + bytes(4000)


def adts(frames: int = 4) -> bytes:
    """Raw AAC: ADTS frames (MPEG-4, LC, 16 kHz, mono), each 7 header bytes and a payload."""
    length = 7 + 100
    header = bytes([0xFF, 0xF1, 0x60, 0x40 | (length >> 11), (length >> 3) & 0xFF,
                    ((length & 7) << 5) | 0x1F, 0xFC])
    return (header + bytes(100)) * frames


def windows_program() -> bytes:
    """A PE file's start: the DOS header ("MZ", e_lfanew at 0x3C) and the PE signature."""
    dos = b"MZ" + bytes(58) + struct.pack("<I", 0x80)
    return dos + bytes(0x80 - len(dos)) + b"PE\x00\x00" + bytes(2000)


M4A = iso_media(b"M4A ", b"M4A ", b"isom")
MP4 = iso_media(b"isom", b"isom", b"mp42")
THREE_GP = iso_media(b"3gp4", b"3gp4", b"isom")
WEBM = ebml(b"webm")
MKA = ebml(b"matroska")
AMR = b"#!AMR\n" + (b"\x3c" + bytes(31)) * 50         # narrow-band frames, mode 7
ELF = Path(os.path.realpath(sys.executable)).read_bytes()
MACHO = b"\xcf\xfa\xed\xfe\x07\x00\x00\x01" + bytes(2000)   # 64-bit x86-64 Mach-O header start
PE = windows_program()

CONTAINERS = [("memo.m4a", M4A, "an M4A (MP4 audio) file"), ("clip.mp4", MP4, "an MP4 file"),
              ("call.3gp", THREE_GP, "a 3GP recording"), ("note.webm", WEBM, "WebM/Matroska audio"),
              ("song.mka", MKA, "WebM/Matroska audio"), ("voice.amr", AMR, "AMR audio"),
              ("voice.aac", adts(), "raw AAC audio (ADTS)")]
PROGRAMS = [("python", ELF, "a program (ELF executable)"), ("tool", MACHO, "a program (Mach-O)"),
            ("setup.exe", PE, "a program (Windows/DOS executable)")]


def test_the_files_are_even_sized_so_raw_pcm_would_have_taken_them():
    """Why these tests can fail: every body is whole 16-bit samples and not text, so read as
    raw PCM (the old rule) each would have been billed as noise."""
    for name, body, _ in CONTAINERS + PROGRAMS:
        assert len(body) % 2 == 0 and b"\x00\x00" in body[:1024], name
    assert ELF[:4] == b"\x7fELF"


@pytest.fixture
def url(fake):
    engine = build_engine(fake)
    try:
        with running(create_app(engine)) as base:
            yield base
    finally:
        engine.shutdown()


def post(url: str, **kwargs) -> requests.Response:
    return requests.post(url + "/stt", timeout=30, **kwargs)


@pytest.mark.parametrize("name, body, found", CONTAINERS, ids=[c[0] for c in CONTAINERS])
def test_containers_are_415_naming_the_conversion(url, fake, name, body, found):
    stem, extension = os.path.splitext(name)
    for reply in (post(url, data=body),                                        # --data-binary
                  post(url, files={"audio": (name, body, "application/octet-stream")})):  # curl -F
        assert reply.status_code == 415, reply.text
        assert f"the body is {found}, which this server does not decode" in reply.text
        assert "ffmpeg -i memo" in reply.text and "-ar 16000 -ac 1 memo.wav" in reply.text
    assert fake.requests == []


def test_the_conversion_example_has_the_extension_of_what_was_sent(url):
    assert "`ffmpeg -i memo.m4a -ar 16000 -ac 1 memo.wav`" in post(url, data=M4A).text
    assert "`ffmpeg -i memo.3gp -ar 16000 -ac 1 memo.wav`" in post(url, data=THREE_GP).text
    assert "`ffmpeg -i memo.webm -ar 16000 -ac 1 memo.wav`" in post(url, data=WEBM).text


@pytest.mark.parametrize("name, body, found", PROGRAMS, ids=[p[0] for p in PROGRAMS])
def test_programs_are_415_not_audio_even_declared_as_raw_pcm(url, fake, name, body, found):
    for params in ({}, {"sample_rate": 16000, "sample_width": 2}):
        reply = post(url, data=body, params=params)
        assert reply.status_code == 415, (params, reply.text)
        assert f"the body is {found}, not audio; send WAV" in reply.text
    assert fake.requests == []


@pytest.mark.parametrize("content_type", ["audio/mp4", "audio/aac", "audio/webm", "video/mp4",
                                          "video/webm", "audio/3gpp", "audio/x-m4a"])
def test_compressed_content_types_are_never_raw_pcm(url, fake, content_type):
    pcm = tone(0.5)                         # whole samples, not text: raw PCM by its bytes
    for reply in (post(url, data=pcm, headers={"Content-Type": content_type}),
                  post(url, data=pcm, headers={"Content-Type": content_type},
                       params={"sample_rate": 16000}),
                  post(url, files={"audio": ("memo", pcm, content_type)})):
        assert reply.status_code == 415, (content_type, reply.text)
        assert f"the body is {content_type} audio, which this server does not decode" in reply.text
        assert "ffmpeg -i" in reply.text
    assert fake.requests == []


def test_real_audio_under_those_labels_and_raw_pcm_still_pass(url, fake):
    # A WAV mislabelled audio/mp4 is a WAV by its header; raw PCM unlabelled stays raw PCM.
    assert post(url, data=SPEECH, headers={"Content-Type": "audio/mp4"}).text == HEARD
    assert post(url, data=tone(1.0)).text == HEARD
    assert post(url, data=tone(1.0), headers={"Content-Type": "audio/L16"}).text == HEARD
    assert len(fake.requests) == 3


def test_json_route_refuses_containers_too(url, fake):
    import base64
    reply = requests.post(url + "/stt/json", json={"audio_b64": base64.b64encode(M4A).decode()},
                          timeout=30)
    assert reply.status_code == 415 and "an M4A (MP4 audio) file" in reply.json()["error"]
    assert fake.requests == []


# ---------------------------------------------------------------- the CLI, the same files

SERVER_WORDS = ("?sample_rate", "sample_width=", "Content-Type", "the body", "send WAV")


@pytest.mark.parametrize("name, body, found", CONTAINERS, ids=[c[0] for c in CONTAINERS])
def test_cli_refuses_containers_naming_the_command_for_that_file(fake, tmp_path, name, body, found):
    path = tmp_path / name
    path.write_bytes(body)
    out = run(["transcribe", str(path)], fake)
    assert out.returncode == 1 and out.stdout == ""
    target = str(path.with_suffix(".wav"))
    assert f"{path} is {found}, which is not read here: convert it with " \
           f"`ffmpeg -i {path} -ar 16000 -ac 1 {target}`" in out.stderr, out.stderr
    assert not any(word in out.stderr for word in SERVER_WORDS), out.stderr
    assert fake.requests == []


def test_cli_refuses_a_program_and_a_raw_file_by_a_compressed_name(fake, tmp_path):
    program = tmp_path / "python3"
    program.write_bytes(ELF)
    renamed = tmp_path / "memo.m4a"              # PCM bytes, but the name says MP4 audio
    renamed.write_bytes(tone(0.5))
    out = run(["transcribe", str(program), str(renamed)], fake)
    assert out.returncode == 1
    assert f"{program} is a program (ELF executable), not audio; give a WAV, FLAC" in out.stderr
    assert "--sample-rate and --sample-width change it" in out.stderr
    assert f"{renamed} is audio/mp4 audio, which is not read here: convert it" in out.stderr
    assert not any(word in out.stderr for word in SERVER_WORDS), out.stderr
    assert fake.requests == []


# ---------------------------------------------------------------- the likeliest cause first

def curl_d(data: bytes) -> bytes:
    """What `curl -d @file` sends: curl reads the file with fgets into a 256-byte buffer and
    keeps each piece up to its first CR, LF or NUL (tool_paramhlp.c, file2string). Checked
    byte for byte against curl 7.88.1 on WAVs and random bytes; test_real_curl_d below runs
    curl itself where it is installed."""
    out, at = [], 0
    while at < len(data):
        newline = data.find(b"\n", at, at + 255)
        piece = data[at:at + 255] if newline < 0 else data[at:newline + 1]
        at += len(piece)
        for stop in (b"\r", b"\n", b"\x00"):
            piece = piece.split(stop)[0]
        out.append(piece)
    return b"".join(out)


def test_curl_d_of_a_wav_names_curl_d_and_data_binary_first(url, fake):
    for rate in (16000, 8000, 44100):
        mangled = curl_d(wav(tone(1.0, rate), rate))
        assert mangled[:4] == b"RIFF" and mangled[8:12] != b"WAVE"  # the header itself is cut
        reply = post(url, data=mangled, headers=FORM)
        assert reply.status_code == 415, reply.text
        assert reply.text.startswith("the body looks like a file mangled by `curl -d`")
        assert "`curl --data-binary @file.wav`" in reply.text and "RIFF '" not in reply.text
    assert fake.requests == []


@pytest.mark.skipif(not any(os.access(os.path.join(d, "curl"), os.X_OK)
                            for d in os.environ.get("PATH", "").split(os.pathsep)),
                    reason="curl is not installed")
def test_real_curl_d(url, fake, tmp_path):
    path = tmp_path / "speech.wav"
    path.write_bytes(SPEECH)
    out = subprocess.run(["curl", "-s", "-d", f"@{path}", url + "/stt"], capture_output=True,
                         text=True, timeout=30)
    assert out.stdout.startswith("the body looks like a file mangled by `curl -d`"), out.stdout
    binary = subprocess.run(["curl", "-s", "--data-binary", f"@{path}", url + "/stt"],
                            capture_output=True, text=True, timeout=30)
    assert binary.stdout == HEARD
    assert len(fake.requests) == 1


WITHOUT_SOUNDFILE = """
import sys
sys.modules["soundfile"] = None          # as if the [flac] extra were not installed
from ovos_stt_plugin_google_apikey.decoding import decode
from ovos_stt_plugin_google_apikey.errors import UnsupportedAudioError
try:
    decode(open(sys.argv[1], "rb").read(), content_type=sys.argv[2])
except UnsupportedAudioError as exc:
    print(exc)
"""


@pytest.mark.parametrize("fmt, subtype, name", [("FLAC", "PCM_16", "FLAC"), ("OGG", "VORBIS", "Ogg")])
def test_flac_and_ogg_without_the_extra_name_the_extra_first(tmp_path, fmt, subtype, name, fake):
    soundfile = pytest.importorskip("soundfile")
    np = pytest.importorskip("numpy")
    path = tmp_path / f"speech.{fmt.lower()}"
    soundfile.write(path, np.frombuffer(tone(1.0), "<i2"), 16000, format=fmt, subtype=subtype)
    for content_type in ("application/x-www-form-urlencoded", "audio/flac", ""):
        out = subprocess.run([sys.executable, "-c", WITHOUT_SOUNDFILE, str(path), content_type],
                             capture_output=True, text=True, timeout=60)
        assert out.stdout.startswith(f"{name} audio needs the optional decoder: pip install "
                                     "'ovos-stt-plugin-google-apikey[flac]'"), out.stdout + out.stderr
        assert "curl" not in out.stdout
    cli = subprocess.run(
        [sys.executable, "-c", "import sys; sys.modules['soundfile'] = None\n"
         "from ovos_stt_plugin_google_apikey.cli import main; sys.exit(main(sys.argv[1:]))",
         "transcribe", str(path), "--endpoint", fake.endpoint],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "GOOGLE_STT_API_KEY": "test-key"})
    assert cli.returncode == 1
    assert f"{path} is {name} audio, which needs the optional decoder: pip install" in cli.stderr
    assert fake.requests == []
