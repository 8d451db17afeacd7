"""The released OVOS client and launchers from PyPI, each in its own venv, with this plugin.

The venvs are built once under .venvs/ (about 10 s each from PyPI) and reused; the plugin under
test is reinstalled into the launcher venvs every session.
"""
from __future__ import annotations

import json
import threading
from pathlib import Path

import compat_envs as envs
import pytest
import requests
from audio_samples import tone, wav
from conftest import KEY, PLUGIN_ID
from venvs import ensure_venv, isolated_env, pip_install, run_python, start_launcher, stop_process, write_mycroft_conf

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.compat


def _launcher_venv(name, spec, site_files=None):
    venv = ensure_venv(name, spec, site_files=site_files)
    pip_install(venv, "--no-deps", "--force-reinstall", str(REPO))    # the code under test
    return venv


@pytest.fixture(scope="module")
def venv_014():
    return _launcher_venv("server-0.1.4", envs.SERVER_014, envs.SERVER_014_SITE_FILES)


@pytest.fixture(scope="module")
def venv_028():
    return _launcher_venv("server-0.28", envs.SERVER_028)


@pytest.fixture(scope="module")
def venv_client():
    return ensure_venv("client-0.1.3", envs.CLIENT_013)


def launch(venv, fake, tmp_path, section=None):
    conf = {"lang": "en-US", "stt": {"module": PLUGIN_ID,
                                     PLUGIN_ID: section or {"key": KEY, "endpoint": fake.endpoint}}}
    xdg = tmp_path / "xdg"
    write_mycroft_conf(xdg, conf)
    return start_launcher(venv, PLUGIN_ID, None, xdg)


def test_released_launcher_014_loads_the_plugin_and_answers_stt(venv_014, fake, tmp_path):
    proc = launch(venv_014, fake, tmp_path)
    try:
        assert proc.status["plugin"] == PLUGIN_ID
        reply = requests.post(proc.url + "/stt", params={"lang": "pt-BR"},
                              data=wav(tone(1.0, 44100, 2, 2), 44100, 2, 2), timeout=30)
        assert reply.status_code == 200 and reply.text == "audio 1.00 seconds at 44100 hertz"
        # The launcher lower-cases lang ("pt-br"); Google still gets its own form.
        assert fake.requests[-1].json["config"]["languageCode"] == "pt-BR"
        assert fake.requests[-1].headers["X-Goog-Api-Key"] == KEY
        silent = requests.post(proc.url + "/stt", data=wav(bytes(16000)), timeout=30)
        assert silent.status_code == 200 and silent.text == ""
    finally:
        stop_process(proc)


def test_released_launcher_014_reads_our_section_not_stt_module(venv_014, fake, tmp_path):
    # OPM 0.9 would hand a plugin the section of whatever stt.module names; ours reads its own.
    conf = {"lang": "en-US", "stt": {"module": "ovos-stt-plugin-server",
                                     "ovos-stt-plugin-server": {"url": "http://127.0.0.1:9/stt"},
                                     PLUGIN_ID: {"key": KEY, "endpoint": fake.endpoint,
                                                 "model": "command_and_search"}}}
    xdg = tmp_path / "xdg"
    write_mycroft_conf(xdg, conf)
    proc = start_launcher(venv_014, PLUGIN_ID, None, xdg)
    try:
        reply = requests.post(proc.url + "/stt", params={"lang": "en-US"}, data=wav(tone(0.5)), timeout=30)
        assert reply.text == "audio 0.50 seconds at 16000 hertz"
        assert fake.requests[-1].json["config"]["model"] == "command_and_search"
    finally:
        stop_process(proc)


def test_prerelease_launcher_028_loads_the_plugin_without_warnings(venv_028, fake, tmp_path):
    proc = launch(venv_028, fake, tmp_path)
    try:
        assert proc.status["plugin"] == PLUGIN_ID
        reply = requests.post(proc.url + "/stt", params={"lang": "en-US", "sample_rate": 8000},
                              data=tone(1.0, 8000), timeout=30)
        assert reply.status_code == 200 and reply.text == "audio 1.00 seconds at 8000 hertz"
        assert fake.requests[-1].json["config"]["languageCode"] == "en-US"
    finally:
        stop_process(proc)
    log = Path(proc.log_path).read_text()
    assert f"old style entrypoint detected for plugin '{PLUGIN_ID}'" not in log


def test_launcher_surfaces_a_bad_key_as_an_error_not_a_transcript(venv_014, fake, tmp_path):
    proc = launch(venv_014, fake, tmp_path, {"key": "wrong-key", "endpoint": fake.endpoint})
    try:
        reply = requests.post(proc.url + "/stt", data=wav(tone(0.5)), timeout=30)
        assert reply.status_code == 500          # the launcher's own answer to a plugin exception
    finally:
        stop_process(proc)
    log = Path(proc.log_path).read_text()
    assert "InvalidKeyError" in log and "wrong-key" not in log


@pytest.fixture
def our_server(fake):
    from ovos_stt_plugin_google_apikey.plugin import GoogleAPIKeySTT
    from ovos_stt_plugin_google_apikey.server import create_app, make_server
    engine = GoogleAPIKeySTT({"key": KEY, "endpoint": fake.endpoint, "lang": "en-US"})
    server = make_server(create_app(engine), "127.0.0.1", 0)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        thread.join(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)
    engine.shutdown()


CLIENT_CODE = """
import json, sys, math, struct
from ovos_plugin_manager.utils.audio import AudioData
from ovos_stt_plugin_server import OVOSHTTPServerSTT
url, rate = sys.argv[1], int(sys.argv[2])
pcm = b"".join(struct.pack("<h", int(8000 * math.sin(i / 4))) for i in range(rate))
stt = OVOSHTTPServerSTT({"url": url, "lang": "en-US"})
print("RESULT", json.dumps([stt.execute(AudioData(pcm, rate, 2), "pt-PT"), stt.execute(AudioData(bytes(rate * 2), rate, 2))]))
"""


def test_released_client_transcribes_through_our_server(venv_client, our_server, fake, tmp_path):
    out = run_python(venv_client, CLIENT_CODE, our_server + "/stt", "22050",
                     env=isolated_env(tmp_path / "xdg"))
    line = next(row for row in out.stdout.splitlines() if row.startswith("RESULT"))
    assert json.loads(line[len("RESULT "):]) == ["audio 1.00 seconds at 22050 hertz", ""]
    assert fake.requests[0].json["config"]["languageCode"] == "pt-PT"


def test_released_client_through_the_released_launcher(venv_client, venv_014, fake, tmp_path):
    proc = launch(venv_014, fake, tmp_path)
    try:
        out = run_python(venv_client, CLIENT_CODE, proc.url + "/stt", "16000",
                         env=isolated_env(tmp_path / "xdg2"))
        line = next(row for row in out.stdout.splitlines() if row.startswith("RESULT"))
        assert json.loads(line[len("RESULT "):]) == ["audio 1.00 seconds at 16000 hertz", ""]
    finally:
        stop_process(proc)


def test_curl_style_multipart_upload(our_server, fake):
    reply = requests.post(our_server + "/stt", files={"audio": ("x.wav", wav(tone(1.0)), "audio/wav")},
                          data={"lang": "en-US"}, timeout=30)
    assert reply.status_code == 200 and reply.text == "audio 1.00 seconds at 16000 hertz"
    assert reply.headers["content-type"] == "text/plain; charset=utf-8"
