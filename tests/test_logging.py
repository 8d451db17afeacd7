"""The package logs through OVOS's LOG, at the levels an operator expects, never the key."""
from __future__ import annotations

import logging
import subprocess
import sys

from audio_samples import tone
from conftest import KEY, mycroft_conf, run_with_mycroft_conf
from fake_google import Fault

PACKAGE = "ovos_stt_plugin_google_apikey"
STREAMING_ID = "ovos-stt-plugin-google-apikey-streaming"


def ours(caplog, level):
    return [r for r in caplog.records if r.levelno == level and PACKAGE in r.name]


def test_a_retry_is_info_from_ovos_log_naming_its_module(make_engine, fake, caplog):
    caplog.set_level(logging.INFO)
    fake.script(Fault.http(503))
    assert make_engine().execute(tone(0.5)) == "audio 0.50 seconds at 16000 hertz"
    [retry] = [r for r in ours(caplog, logging.INFO) if "retrying" in r.getMessage()]
    assert retry.name == f"OVOS - {PACKAGE}.client"            # LOG's: "<service> - <module>"
    assert (retry.module, retry.funcName) == ("client", "recognize")
    # Nothing of ours goes through a stdlib logger that no OVOS service configures.
    assert not [name for name in logging.root.manager.loggerDict if name.startswith(PACKAGE)]


def test_a_fallback_is_a_warning(make_engine, fake, caplog):
    caplog.set_level(logging.INFO)
    fake.script(Fault.http(503))               # the progressive upload fails: the buffered audio goes up
    engine = make_engine(STREAMING_ID)
    engine.stream_start()
    engine.stream_data(tone(0.5))
    assert engine.transcribe()[0][0] == "audio 0.50 seconds at 16000 hertz"
    [warning] = ours(caplog, logging.WARNING)
    assert "transcribing the buffered audio instead" in warning.getMessage()
    assert warning.name == f"OVOS - {PACKAGE}.streamed"


SERVICE = """
from ovos_utils.log import LOG
LOG.name = "voice"                   # what init_service_logger does for a service, at DEBUG
LOG.init({"level": "DEBUG", "path": "stdout"})
from ovos_plugin_manager.stt import OVOSSTTFactory
engine = OVOSSTTFactory.create()
print("TEXT", engine.execute(bytes(range(256)) * 125))
"""


def test_in_a_service_the_lines_carry_time_level_and_origin_and_never_the_key(fake, tmp_path):
    marker = "MARKER-KEY-3c9e71"
    fake.valid_keys.add(marker)
    fake.script(Fault.http(503))
    out = run_with_mycroft_conf(tmp_path, mycroft_conf({"key": marker, "endpoint": fake.endpoint}),
                                SERVICE)
    assert "TEXT audio 1.00 seconds at 16000 hertz" in out.stdout, out.stdout + out.stderr
    retry = [line for line in out.stdout.splitlines() if "retrying in" in line]
    assert len(retry) == 1
    assert f" - voice - {PACKAGE}.client - INFO - Google STT attempt 1 failed" in retry[0]
    assert retry[0][:4].isdigit()                                   # the service's time stamp
    # At DEBUG, OPM's own get_plugin_config logs the whole section, key included (README,
    # Security); no line of ours carries it.
    assert not [line for line in (out.stdout + out.stderr).splitlines()
                if marker in line and PACKAGE in line]


CLI = """
import logging, sys
from ovos_stt_plugin_google_apikey import cli
status = cli.main(sys.argv[1:])
print("LEVELS", logging.getLogger("urllib3").getEffectiveLevel(), logging.getLogger().level)
"""


def test_cli_logs_to_stderr_without_changing_other_libraries_levels(fake, tmp_path):
    fake.script(Fault.http(503))
    env = {"PATH": "/usr/bin:/bin", "XDG_CONFIG_HOME": str(tmp_path), "GOOGLE_STT_API_KEY": KEY}
    out = subprocess.run([sys.executable, "-c", CLI, "check", "-v", "--endpoint", fake.endpoint],
                         capture_output=True, text=True, timeout=60, env=env)
    assert out.stdout.startswith("OK: Google Speech-to-Text accepted the key"), out.stderr
    assert f"OVOS - {PACKAGE}.client - INFO - Google STT attempt 1 failed" in out.stderr
    assert f"LEVELS {logging.WARNING} {logging.WARNING}" in out.stdout    # -v is ours alone
    assert "urllib3" not in out.stderr and KEY not in out.stdout + out.stderr
