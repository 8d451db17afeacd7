"""Shared fixtures: an isolated OVOS configuration, the fake Google, engines built by OVOS."""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile

# Before anything imports ovos_config: never read the developer's own mycroft.conf, never
# pick up a real key from the environment.
_XDG = tempfile.mkdtemp(prefix="google-stt-tests-")
os.environ["XDG_CONFIG_HOME"] = _XDG
LIVE_KEY = os.environ.get("GOOGLE_STT_API_KEY", "")   # only test_live.py uses it
# What a user may have exported after README's Quick start must not change what the tests see:
# the key, the launcher's key variable, and the server's defaults (token, language, port).
for _name in ("GOOGLE_STT_API_KEY", "STT_PW", "GOOGLE_STT_SERVER_TOKEN", "STT_LANG", "PORT"):
    os.environ.pop(_name, None)

import pytest  # noqa: E402
from hypothesis import settings as hypothesis_settings  # noqa: E402

# Every generated test (hypothesis, schemathesis) tries the same examples on every run, so no
# test fails at random; HYPOTHESIS_PROFILE=explore searches afresh (and finds new cases).
hypothesis_settings.register_profile("deterministic", derandomize=True, database=None)
hypothesis_settings.register_profile("explore", derandomize=False)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "deterministic"))
from fake_google import FakeGoogle  # noqa: E402
from ovos_utils.log import LOG  # noqa: E402

_LOG_CREATE = LOG.create_logger     # the real one, before any test (or the CLI) wraps it

PLUGIN_ID = "ovos-stt-plugin-google-apikey"
KEY = "test-key"


def _into_caplog(logger: logging.Logger) -> logging.Logger:
    logger.handlers.clear()
    logger.propagate = True
    logger.setLevel(logging.NOTSET)
    return logger


@pytest.fixture(autouse=True)
def ovos_log_into_caplog():
    """The package logs through OVOS's LOG, which writes through stdlib loggers of its own
    ('OVOS - <module>', or with LOG.info '... - <module>:<function>:<line>') that print to
    stdout at LOG's level and do not propagate. Here they propagate with no level or handler of their own, so caplog sees every
    line at whatever level a test asks for (root's, as for any stdlib logger). Set before each
    test: the CLI, run in-process by some tests, sets LOG's level and wraps create_logger."""
    LOG.create_logger = lambda name, tostdout=True: _into_caplog(_LOG_CREATE(name, tostdout))
    for existing in list(LOG._loggers.values()):
        _into_caplog(existing)
    yield


@pytest.fixture(scope="session")
def fake_server():
    with FakeGoogle() as fake:
        yield fake


@pytest.fixture
def fake(fake_server):
    fake_server.reset()
    yield fake_server
    fake_server.reset()


def mycroft_conf(section: dict, lang: str = "en-US", plugin_id: str = PLUGIN_ID) -> dict:
    """A mycroft.conf-shaped dict selecting the plugin."""
    return {"lang": lang, "stt": {"module": plugin_id, plugin_id: section}}


@pytest.fixture
def make_engine(fake):
    """Build engines the way OVOS does: OVOSSTTFactory.create(mycroft.conf dict)."""
    from ovos_plugin_manager.stt import OVOSSTTFactory
    built = []

    def make(plugin_id: str = PLUGIN_ID, **section):
        section.setdefault("key", KEY)
        section.setdefault("endpoint", fake.endpoint)
        section.setdefault("timeout", 5)
        engine = OVOSSTTFactory.create(mycroft_conf(section, plugin_id=plugin_id))
        built.append(engine)
        return engine

    yield make
    for engine in built:
        engine.shutdown()


def build_plugin(endpoint: str, **settings):
    """The one-shot plugin built directly, as the server, the CLI and the Wyoming server build
    it: against ``endpoint``, short deadlines and no retries unless a test says otherwise."""
    from ovos_stt_plugin_google_apikey.plugin import GoogleAPIKeySTT
    config = {"key": KEY, "endpoint": endpoint, "lang": "en-US", "timeout": 3, "retries": 0}
    return GoogleAPIKeySTT({**config, **settings})


@pytest.fixture
def plugin(fake):
    """``plugin(**settings)``: build_plugin against the shared fake Google, shut down after."""
    built = []

    def make(**settings):
        built.append(build_plugin(fake.endpoint, **settings))
        return built[-1]

    yield make
    for engine in built:
        engine.shutdown()


@pytest.fixture
def engine(plugin):
    """The plugin at the test defaults; a test file needing other settings overrides this
    fixture with ``plugin(...)``."""
    return plugin()


def run_with_mycroft_conf(tmp_path, conf: dict, code: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh Python process whose only OVOS configuration is ``conf``."""
    (tmp_path / "mycroft").mkdir()
    (tmp_path / "mycroft" / "mycroft.conf").write_text(json.dumps(conf))
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={"XDG_CONFIG_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})
