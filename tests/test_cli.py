"""`ovos-google-stt transcribe` and `check`, run as a user would, against the fake Google."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from audio_samples import tone, wav
from conftest import KEY


def run(args, fake=None, key=KEY, timeout=60, **env):
    full_env = {"PATH": os.environ["PATH"], "XDG_CONFIG_HOME": os.environ["XDG_CONFIG_HOME"], **env}
    if key:
        full_env["GOOGLE_STT_API_KEY"] = key
    if fake is not None:
        args = [*args, "--endpoint", fake.endpoint]
    return subprocess.run([sys.executable, "-m", "ovos_stt_plugin_google_apikey.cli", *args],
                          capture_output=True, text=True, timeout=timeout, env=full_env)


def test_transcribe_prints_the_text(fake, tmp_path):
    path = tmp_path / "hello.wav"
    path.write_bytes(wav(tone(1.5, 22050), 22050))
    out = run(["transcribe", str(path), "--lang", "pt-br"], fake)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "audio 1.50 seconds at 22050 hertz\n"
    assert fake.requests[-1].json["config"]["languageCode"] == "pt-BR"


def test_transcribe_json_and_several_files_with_progress(fake, tmp_path):
    short, long_ = tmp_path / "a.wav", tmp_path / "b.wav"
    short.write_bytes(wav(tone(1.0)))
    long_.write_bytes(wav(tone(70.0)))
    out = run(["transcribe", str(short), str(long_), "--json"], fake)
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert [line["file"] for line in lines] == [str(short), str(long_)]
    assert lines[0]["alternatives"][0] == {"text": "audio 1.00 seconds at 16000 hertz", "confidence": 0.9}
    assert lines[1]["duration"] == 70.0 and len(lines[1]["alternatives"]) == 1
    assert f"{long_}: part 2 of 2 done" in out.stderr


def test_transcribe_reports_each_failure_and_exits_1(fake, tmp_path):
    good = tmp_path / "good.wav"
    good.write_bytes(wav(tone(1.0)))
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"RIFF" + b"\x01" * 50)
    out = run(["transcribe", str(junk), str(tmp_path / "missing.wav"), str(good)], fake)
    assert out.returncode == 1
    assert "junk.wav is a RIFF file, not WAV audio; give a WAV, FLAC" in out.stderr
    assert "missing.wav: No such file or directory" in out.stderr
    assert f"{good}: audio 1.00 seconds at 16000 hertz" in out.stdout


def test_check_ok(fake):
    out = run(["check"], fake)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("OK: Google Speech-to-Text accepted the key")
    assert len(fake.requests) == 1


@pytest.mark.parametrize("kind,says", [("disabled", "enable the Cloud Speech-to-Text API"),
                                       ("restricted", "API restrictions"),
                                       ("key_type", "standard API key"),
                                       ("invalid", "apis/credentials")])
def test_check_says_what_to_fix(fake, kind, says):
    fake.key_errors[KEY] = kind
    out = run(["check"], fake)
    assert out.returncode == 1
    assert out.stderr.startswith("FAILED:") and says in out.stderr
    assert KEY not in out.stderr + out.stdout


def test_check_quota_and_network(fake):
    from fake_google import Fault
    fake.script(*[Fault.http(429, retry_after=60)] * 3)
    out = run(["check"], fake)
    assert out.returncode == 1 and "quotas" in out.stderr
    out = run(["check", "--endpoint", "http://127.0.0.1:9", "--timeout", "2"])
    assert out.returncode == 1 and "Check the network" in out.stderr


def test_no_key_is_a_clear_usage_error(fake, tmp_path):
    out = run(["check"], fake, key=None)
    assert out.returncode == 2 and "GOOGLE_STT_API_KEY" in out.stderr


def test_key_is_not_accepted_on_the_command_line(fake):
    out = run(["check", "--key", "abc"], fake)
    assert out.returncode == 2 and "unrecognized arguments: --key" in out.stderr


def test_settings_from_a_config_file_and_bad_values(fake, tmp_path):
    conf = tmp_path / "google.json"
    conf.write_text(json.dumps({"model": "default", "max_alternatives": 2}))
    out = run(["transcribe", "--config", str(conf), str(_wav(tmp_path))], fake)
    assert out.returncode == 0, out.stderr
    assert fake.requests[-1].json["config"]["model"] == "default"
    assert fake.requests[-1].json["config"]["maxAlternatives"] == 2
    conf.write_text(json.dumps({"model": "fastest"}))
    out = run(["transcribe", "--config", str(conf), str(_wav(tmp_path))], fake)
    assert out.returncode == 2 and "'model' must be one of" in out.stderr


def _wav(tmp_path):
    path = tmp_path / "x.wav"
    path.write_bytes(wav(tone(0.5)))
    return path
