"""`ovos-google-stt transcribe` refuses what is not audio with the server's message, and offers
the server's budget as --max-seconds (issue 10 points 3 and 5)."""
from __future__ import annotations

from audio_samples import tone, wav
from test_cli import run


def test_a_text_file_is_refused_non_zero_with_what_to_send(fake, tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# A project\n\nSome words about it.\n" * 10)
    notes = tmp_path / "notes"                                # no extension: the bytes say text
    notes.write_bytes(b"hello world!")
    out = run(["transcribe", str(readme), str(notes)], fake)
    assert out.returncode == 1 and out.stdout == ""
    # text/markdown from the name where the system's mime.types knows .md; else the bytes say text
    assert f"{readme} is " in out.stderr and "not audio" in out.stderr.split(f"{readme} is ")[1]
    assert f"{notes} is text, not audio; give a WAV, FLAC, Ogg, AIFF or MP3 file" in out.stderr
    assert "body" not in out.stderr and "?sample_rate" not in out.stderr   # the server's words
    assert fake.requests == []


def test_odd_sized_raw_file_is_refused(fake, tmp_path):
    raw = tmp_path / "speech.raw"
    raw.write_bytes(tone(0.5) + b"\x00")
    out = run(["transcribe", str(raw)], fake)
    assert out.returncode == 1 and "not a whole number of 16-bit samples" in out.stderr
    assert fake.requests == []


def test_max_seconds_refuses_longer_files_and_is_off_by_default(fake, tmp_path):
    path = tmp_path / "long.wav"
    path.write_bytes(wav(tone(3.0)))
    out = run(["transcribe", str(path), "--max-seconds", "2"], fake)
    assert out.returncode == 1 and "3.0 s, over the limit of 2 s" in out.stderr
    assert fake.requests == []
    out = run(["transcribe", str(path)], fake)
    assert (out.returncode, out.stdout) == (0, "audio 3.00 seconds at 16000 hertz\n")
    bad = run(["transcribe", str(path), "--max-seconds", "none"], fake)
    assert bad.returncode == 2 and "--max-seconds" in bad.stderr
