"""What `ovos-google-stt` tells a person and a program (issue 19): --version, no speech said on
stderr, one --json line per file (a failed one too), --help on how files are read, raw PCM
options, and `serve` on a busy port refused in one line before anything starts."""
from __future__ import annotations

import json
import socket

from audio_samples import tone, wav
from test_cli import run

from ovos_stt_plugin_google_apikey.version import __version__


def test_version():
    out = run(["--version"])
    assert (out.returncode, out.stdout) == (0, f"ovos-google-stt {__version__}\n")


def test_no_speech_keeps_its_stdout_line_and_says_so_on_stderr(fake, tmp_path):
    quiet, loud = tmp_path / "quiet.wav", tmp_path / "loud.wav"
    quiet.write_bytes(wav(bytes(32000)))            # digital silence: Google answers {}
    loud.write_bytes(wav(tone(1.0)))
    one = run(["transcribe", str(quiet)], fake)
    assert (one.returncode, one.stdout) == (0, "\n")
    assert one.stderr.splitlines()[0] == "(no speech heard)"
    both = run(["transcribe", str(quiet), str(loud)], fake)
    assert both.stdout == f"{quiet}: \n{loud}: audio 1.00 seconds at 16000 hertz\n"
    assert f"{quiet}: (no speech heard)" in both.stderr and f"{loud}: (no" not in both.stderr


def test_json_has_one_line_per_file_failed_ones_included(fake, tmp_path):
    good, missing, memo = tmp_path / "good.wav", tmp_path / "missing.wav", tmp_path / "memo.m4a"
    good.write_bytes(wav(tone(1.0)))
    memo.write_bytes(b"\x00\x00\x00\x18ftypM4A \x00\x00\x02\x00M4A isom" + bytes(2000))
    out = run(["transcribe", str(good), str(missing), str(memo), "--json"], fake)
    assert out.returncode == 1
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert [line["file"] for line in lines] == [str(good), str(missing), str(memo)]
    assert lines[0]["alternatives"][0]["text"] == "audio 1.00 seconds at 16000 hertz"
    assert lines[1] == {"file": str(missing), "error": f"{missing}: No such file or directory"}
    assert set(lines[2]) == {"file", "error"} and "ffmpeg -i" in lines[2]["error"]
    assert len(fake.requests) == 1


def test_help_says_how_other_files_are_read_and_how_to_change_it():
    out = run(["transcribe", "--help"], COLUMNS="300")         # no line breaks inside words
    text = " ".join(out.stdout.split())
    assert "Any other file is read as raw PCM: little-endian 16-bit mono at 16 kHz" in text
    assert "--sample-rate" in text and "--sample-width" in text and "ffmpeg -i memo.m4a" in text


def test_raw_pcm_options_set_the_format_of_a_raw_file(fake, tmp_path):
    raw = tmp_path / "speech.raw"
    raw.write_bytes(tone(1.0, 8000))
    out = run(["transcribe", str(raw), "--sample-rate", "8000"], fake)
    assert (out.returncode, out.stdout) == (0, "audio 1.00 seconds at 8000 hertz\n"), out.stderr
    default = run(["transcribe", str(raw)], fake)
    assert default.stdout == "audio 0.50 seconds at 16000 hertz\n"


def test_serve_on_a_busy_port_is_one_line_and_non_zero_before_serving(fake):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        out = run(["serve", "--port", str(port)], fake, timeout=30)
    assert out.returncode == 2
    assert out.stderr == f"ovos-google-stt: cannot listen on 127.0.0.1:{port}: the port is in use " \
                         "(is another server running?); choose another with --port or --host\n"
    assert "serving on" not in out.stdout + out.stderr
