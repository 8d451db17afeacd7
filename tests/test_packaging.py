"""The built sdist and wheel: a fresh virtual environment with only the wheel gets a working plugin."""
from __future__ import annotations

import json
import subprocess
import sys
import tarfile
import venv
import zipfile
from pathlib import Path

import pytest
from conftest import KEY, PLUGIN_ID, mycroft_conf

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.compat


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    done = subprocess.run([sys.executable, "-m", "build", "--outdir", str(out), str(REPO)],
                          check=True, capture_output=True, text=True, timeout=600)
    return out, done.stdout + done.stderr


@pytest.fixture(scope="module")
def dist(built):
    return built[0]


def test_the_build_has_no_setuptools_warnings(built):
    log = built[1]
    # "byte-compiling is disabled" is the environment's PYTHONDONTWRITEBYTECODE, not packaging.
    warnings = [line for line in log.splitlines() if "warn" in line.lower()
                and "byte-compiling is disabled" not in line]
    assert warnings == [], "\n".join(warnings)
    assert "absent from the `packages` configuration" not in log


def test_the_sdist_alone_installs_with_its_data_files(dist, tmp_path):
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    sdist = next(dist.glob("*.tar.gz"))
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", str(sdist)],
                   check=True, capture_output=True, timeout=900)
    code = ("import importlib.util, pathlib\n"
            "spec = importlib.util.find_spec('ovos_stt_plugin_google_apikey')\n"
            "print((pathlib.Path(spec.origin).parent / 'data' / 'languages.txt').read_text(), end='')\n")
    out = subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=60,
                         cwd=tmp_path)
    shipped = (REPO / "ovos_stt_plugin_google_apikey" / "data" / "languages.txt").read_text()
    assert out.stdout == shipped, out.stderr


OLD_PYTHONS = sorted(Path("/root/.pyenv/versions").glob("3.9*/bin/python3.9")) + \
    sorted(Path("/root/.pyenv/versions").glob("3.10*/bin/python3.10"))


@pytest.mark.skipif(not OLD_PYTHONS, reason="no pyenv Python 3.9 or 3.10 on this machine")
@pytest.mark.parametrize("python", OLD_PYTHONS, ids=[p.name for p in OLD_PYTHONS])
def test_pip_install_on_old_pythons_prints_no_legacy_warning(python, tmp_path):
    """pip on 3.9/3.10 warned of the legacy `setup.py install` while there was no pyproject.toml."""
    env_dir = tmp_path / "venv"
    subprocess.run([str(python), "-m", "venv", str(env_dir)], check=True, timeout=120)
    out = subprocess.run([str(env_dir / "bin" / "python"), "-m", "pip", "install", "--no-deps",
                          str(REPO)], capture_output=True, text=True, timeout=900)
    log = out.stdout + out.stderr
    assert out.returncode == 0, log[-3000:]
    assert "legacy" not in log.lower() and "setup.py install" not in log, log[-3000:]


def test_sdist_and_wheel_carry_the_package_data(dist):
    wheel = next(dist.glob("*.whl"))
    sdist = next(dist.glob("*.tar.gz"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "ovos_stt_plugin_google_apikey/data/languages.txt" in names
    entry_points = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    for group in ("[opm.stt]", "[opm.stt.config]", "[mycroft.plugin.stt]", "[console_scripts]"):
        assert group in entry_points
    members = tarfile.open(sdist).getnames()
    assert any(m.endswith("ovos_stt_plugin_google_apikey/data/languages.txt") for m in members)
    assert any(m.endswith("/LICENSE") for m in members)


def test_wheel_in_a_fresh_venv_works_through_ovos(dist, fake, tmp_path):
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    wheel = next(dist.glob("*.whl"))
    subprocess.run([str(python), "-m", "pip", "install", "-q", str(wheel)], check=True,
                   capture_output=True, timeout=900)
    conf = mycroft_conf({"key": KEY, "endpoint": fake.endpoint})
    code = ("import json, sys, math, struct\n"
            "from ovos_plugin_manager.stt import OVOSSTTFactory\n"
            "from ovos_plugin_manager.utils.audio import AudioData\n"
            "pcm = b''.join(struct.pack('<h', int(9000 * math.sin(i / 5))) for i in range(16000))\n"
            "engine = OVOSSTTFactory.create(json.loads(sys.argv[1]))\n"
            "print('TEXT', engine.execute(AudioData(pcm, 16000, 2)), len(engine.available_languages))\n")
    out = subprocess.run([str(python), "-c", code, json.dumps(conf)], capture_output=True, text=True,
                         timeout=120, cwd=tmp_path, env={"XDG_CONFIG_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert "TEXT audio 1.00 seconds at 16000 hertz 140" in out.stdout, out.stderr[-2000:]
    assert (env_dir / "bin" / "ovos-google-stt").exists()
    assert PLUGIN_ID in fake.requests[-1].headers["User-Agent"]


@pytest.mark.parametrize("pins,opm_major", [
    # The released ovos-stt-server launcher's own pins (it needs plugin-manager < 1.0) ...
    (["ovos-plugin-manager>=0.7.0,<1.0.0", "ovos-utils>=0.0.32,<1.0.0"], "0"),
    # ... and today's OVOS.
    (["ovos-plugin-manager>=2.1.1,<3.0.0", "ovos-utils>=0.8.4,<1.0.0"], "2"),
])
def test_dependency_ranges_resolve_beside_old_and_new_ovos(tmp_path, pins, opm_major):
    report = tmp_path / "report.json"
    subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "-q",
                    "--report", str(report), *pins, str(REPO)], check=True, capture_output=True, timeout=600)
    versions = {i["metadata"]["name"].lower(): i["metadata"]["version"]
                for i in json.loads(report.read_text())["install"]}
    assert versions["ovos-stt-plugin-google-apikey"]
    assert versions["ovos-plugin-manager"].split(".")[0] == opm_major
