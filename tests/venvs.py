"""Cached, isolated virtual environments for OVOS compatibility tests.

Stdlib only; meant to be imported from a pytest ``conftest.py``.

    from venvs import ensure_venv, pip_install, start_launcher, stop_process, write_mycroft_conf

    venv = ensure_venv("stt-server-0.1.4", SERVER_014)     # created once, then reused
    pip_install(venv, "--no-deps", "--force-reinstall", str(PLUGIN_DIR))   # code under test: every session
    write_mycroft_conf(tmp / "xdg", {"stt": {"module": "...", "...": {...}}})
    proc = start_launcher(venv, "ovos-stt-plugin-probe", None, tmp / "xdg")
    ... requests to proc.url + "/stt" ...
    stop_process(proc)

Environment knobs:
  OVOS_COMPAT_VENV_DIR   cache directory (default: <repo>/.venvs, repo = parent of this file's dir
                         unless OVOS_COMPAT_REPO is set)
  OVOS_COMPAT_PYTHON     interpreter used to create the venvs (default: sys.executable)
  To force a rebuild, delete the venv directory (or its marker file).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterable, Mapping, Optional, Sequence, Union

try:
    import fcntl
except ImportError:  # pragma: no cover - non-POSIX
    fcntl = None

# Bump when the way venvs are built changes, to invalidate every cached venv.
_LAYOUT_VERSION = "1"
MARKER = ".ensure-venv-ok.json"

PipArgs = Union[Sequence[str], Sequence[Sequence[str]]]


# --------------------------------------------------------------------------- paths

def default_cache_dir() -> Path:
    if os.environ.get("OVOS_COMPAT_VENV_DIR"):
        return Path(os.environ["OVOS_COMPAT_VENV_DIR"])
    repo = Path(os.environ.get("OVOS_COMPAT_REPO") or Path(__file__).resolve().parent.parent)
    return repo / ".venvs"


def venv_bin(venv: Path, name: str = "python") -> Path:
    """Path of an executable inside a venv (``python``, ``pip``, ``ovos-stt-server`` ...)."""
    sub = "Scripts" if os.name == "nt" else "bin"
    return Path(venv) / sub / name


def site_packages(venv: Path) -> Path:
    out = subprocess.run([str(venv_bin(venv)), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         check=True, capture_output=True, text=True)
    return Path(out.stdout.strip())


# --------------------------------------------------------------------------- venvs

def _normalise(pip_args: PipArgs) -> list:
    """Accept one pip invocation (list of str) or several (list of lists)."""
    if not pip_args:
        return []
    if isinstance(pip_args[0], str):
        return [list(pip_args)]
    return [list(a) for a in pip_args]


def _fingerprint(python: str, calls: list, site_files: Mapping[str, str]) -> str:
    """Hash of everything that defines the venv: interpreter version, pip args, the content of
    any arg that is a local *file* (requirements/constraints), and the stub files."""
    pyver = subprocess.run([python, "-c", "import sys,platform; print(sys.version, platform.machine())"],
                           check=True, capture_output=True, text=True).stdout.strip()
    h = hashlib.sha256()
    h.update(json.dumps([_LAYOUT_VERSION, pyver, calls, sorted(site_files.items())]).encode())
    for call in calls:
        for a in call:
            p = Path(a)
            if len(a) < 4096 and p.is_file():
                h.update(p.read_bytes())
    return h.hexdigest()[:12]


@contextlib.contextmanager
def _locked(path: Path):
    """Inter-process lock (pytest-xdist workers building the same venv)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        if fcntl:
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            if fcntl:
                fcntl.flock(fh, fcntl.LOCK_UN)


def _run(cmd: list, log, env=None, timeout=None):
    log.write(f"\n$ {' '.join(map(str, cmd))}\n")
    log.flush()
    t = time.monotonic()
    r = subprocess.run([str(c) for c in cmd], stdout=log, stderr=subprocess.STDOUT, env=env, timeout=timeout)
    log.write(f"# rc={r.returncode} in {time.monotonic() - t:.1f}s\n")
    log.flush()
    if r.returncode:
        raise subprocess.CalledProcessError(r.returncode, cmd)


def ensure_venv(name: str, pip_args: PipArgs, *, python: Optional[str] = None,
                cache_dir: Optional[Path] = None, site_files: Optional[Mapping[str, str]] = None,
                timeout: float = 1800) -> Path:
    """Return a ready venv ``<cache_dir>/<name>-<hash>``; build it first if needed.

    pip_args: one ``pip install`` argument list, or a list of them run in order, e.g.
        [["--no-deps", "ovos-stt-http-server==0.1.4"], ["ovos-plugin-manager>=0.7,<1", ...]]
    site_files: {relative path: text} written into site-packages after pip (e.g. a stub module).
    A marker file is written only after everything succeeded; a venv without it is rebuilt.
    The pip log is kept at ``<venv>/ensure-venv.log`` (and ``<venv>.failed.log`` on failure).
    """
    python = python or os.environ.get("OVOS_COMPAT_PYTHON") or sys.executable
    cache_dir = Path(cache_dir or default_cache_dir())
    site_files = dict(site_files or {})
    calls = _normalise(pip_args)
    venv = cache_dir / f"{name}-{_fingerprint(python, calls, site_files)}"
    marker = venv / MARKER

    with _locked(cache_dir / f".{venv.name}.lock"):
        if marker.is_file() and venv_bin(venv).exists():
            return venv
        shutil.rmtree(venv, ignore_errors=True)
        venv.parent.mkdir(parents=True, exist_ok=True)
        t0 = time.monotonic()
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PIP_USER")}
        env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
        log_path = cache_dir / f"{venv.name}.log"
        try:
            with open(log_path, "w") as log:
                _run([python, "-m", "venv", venv], log, env, timeout)
                for call in calls:
                    _run([venv_bin(venv), "-m", "pip", "install", "--no-input", *call], log, env, timeout)
                if site_files:
                    sp = site_packages(venv)
                    for rel, text in site_files.items():
                        (sp / rel).parent.mkdir(parents=True, exist_ok=True)
                        (sp / rel).write_text(text)
                        log.write(f"# wrote {sp / rel}\n")
                freeze = subprocess.run([str(venv_bin(venv)), "-m", "pip", "freeze", "--all"],
                                        capture_output=True, text=True, env=env).stdout
        except BaseException as exc:
            failed = cache_dir / f"{venv.name}.failed.log"
            shutil.copy(log_path, failed)
            shutil.rmtree(venv, ignore_errors=True)
            if not isinstance(exc, Exception):   # KeyboardInterrupt etc.
                raise
            tail = failed.read_text(errors="replace")[-2500:]
            raise RuntimeError(f"building venv {venv.name} failed; pip log: {failed}\n{tail}") from None
        shutil.move(str(log_path), venv / "ensure-venv.log")
        marker.write_text(json.dumps({"name": name, "python": python, "pip_args": calls,
                                      "site_files": sorted(site_files), "seconds": round(time.monotonic() - t0, 1),
                                      "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
                                      "freeze": freeze.splitlines()}, indent=1))
        return venv


def pip_install(venv: Path, *args: str, timeout: float = 600) -> None:
    """Extra (uncached) install into an existing venv, e.g. the plugin under test each session:
    ``pip_install(venv, "--no-deps", "--force-reinstall", "/path/to/plugin")``."""
    r = subprocess.run([str(venv_bin(venv)), "-m", "pip", "install", "--no-input",
                        "--disable-pip-version-check", *args],
                       capture_output=True, text=True, timeout=timeout)
    if r.returncode:
        raise RuntimeError(f"pip install {' '.join(args)} failed in {venv}:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")


# --------------------------------------------------------------------------- config / env

def write_mycroft_conf(xdg_config_home: Path, conf: dict) -> Path:
    """Write ``$XDG_CONFIG_HOME/mycroft/mycroft.conf`` (the user config ovos-config reads last)."""
    p = Path(xdg_config_home) / "mycroft" / "mycroft.conf"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(conf, indent=1))
    return p


def isolated_env(xdg_config_home: Path, env: Optional[Mapping[str, str]] = None) -> dict:
    """os.environ with every config location ovos-config looks at pointed into a scratch tree.

    ovos-config reads (in order) the packaged default, /usr/share/mycroft, /etc/mycroft,
    $XDG_CONFIG_DIRS/mycroft (default /etc/xdg), $XDG_CONFIG_HOME/mycroft/web_cache.json,
    ~/.mycroft/mycroft.conf, [$XDG_CONFIG_HOME/mycroft/runtime.conf in 3.x] and finally
    $XDG_CONFIG_HOME/mycroft/mycroft.conf. /usr/share and /etc paths cannot be redirected;
    clean CI machines do not have them.
    """
    xdg_config_home = Path(xdg_config_home).resolve()
    root = xdg_config_home.parent
    out = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "MYCROFT_SYSTEM_CONFIG",
                        "OVOS_DISTRIBUTION_CONFIG", "MYCROFT_WEB_CACHE")}
    out.update({
        "XDG_CONFIG_HOME": str(xdg_config_home),
        "XDG_CONFIG_DIRS": str(root / "xdg-config-dirs"),   # hides /etc/xdg/mycroft/mycroft.conf
        "XDG_DATA_HOME": str(root / "xdg-data"),
        "XDG_CACHE_HOME": str(root / "xdg-cache"),
        "HOME": str(root / "home"),                          # hides ~/.mycroft/mycroft.conf
        "PYTHONUNBUFFERED": "1",
        "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
    })
    (root / "home").mkdir(parents=True, exist_ok=True)
    out.update(env or {})
    return out


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------- processes

def wait_http(url: str, timeout: float = 60, proc: Optional[subprocess.Popen] = None,
              interval: float = 0.1) -> dict:
    """Poll ``url`` (GET) until it answers 200; return the decoded JSON (or {'text': ...})."""
    deadline = time.monotonic() + timeout
    last = None
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered"
                               + _log_tail(proc))
        try:
            with opener.open(url, timeout=2) as r:
                body = r.read().decode()
                try:
                    return json.loads(body)
                except ValueError:
                    return {"text": body}
        except (urllib.error.URLError, ConnectionError, OSError) as e:
            last = e
        time.sleep(interval)
    raise TimeoutError(f"{url} not ready after {timeout}s: {last!r}" + (_log_tail(proc) if proc else ""))


def wait_port(host: str, port: int, timeout: float = 60, proc: Optional[subprocess.Popen] = None,
              interval: float = 0.1) -> None:
    """Wait until something accepts TCP connections on ``host:port`` (a server that answers no plain
    GET with 200, e.g. a websocket bus)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {host}:{port} accepted"
                               + _log_tail(proc))
        try:
            with socket.create_connection((host, port), timeout=2):
                return
        except OSError as e:
            last = e
        time.sleep(interval)
    raise TimeoutError(f"{host}:{port} not accepting after {timeout}s: {last!r}" + (_log_tail(proc) if proc else ""))


def _log_tail(proc, n: int = 4000) -> str:
    p = getattr(proc, "log_path", None)
    if p and Path(p).is_file():
        return "\n--- log tail ---\n" + Path(p).read_text(errors="replace")[-n:]
    return ""


def start_process(cmd: Sequence[str], *, env: Mapping[str, str], log_path: Path,
                  ready_url: Optional[str] = None, timeout: float = 60) -> subprocess.Popen:
    """Start ``cmd`` in its own process group, output to ``log_path``; optionally wait for a URL."""
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = open(log_path, "w")
    t0 = time.monotonic()
    proc = subprocess.Popen([str(c) for c in cmd], stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, env=dict(env), start_new_session=True)
    log.close()  # the child keeps its own handle
    proc.log_path = log_path
    proc.status = None
    if ready_url:
        try:
            proc.status = wait_http(ready_url, timeout, proc)
        except BaseException:
            stop_process(proc)
            raise
    proc.startup_seconds = time.monotonic() - t0
    return proc


def start_launcher(venv: Path, engine: str, port: Optional[int], xdg_config_home: Path,
                   env: Optional[Mapping[str, str]] = None, *, host: str = "127.0.0.1",
                   extra_args: Iterable[str] = (), timeout: float = 60,
                   log_path: Optional[Path] = None) -> subprocess.Popen:
    """Run the venv's released ``ovos-stt-server --engine <engine>`` and wait for GET /status.

    Returns the Popen with extra attributes: ``url`` (http://host:port), ``port``, ``status``
    (the /status JSON), ``startup_seconds``, ``log_path``. Stop it with ``stop_process``.
    port=None picks a free port. ``env`` entries override the isolated environment.
    """
    port = port or free_port(host)
    exe = venv_bin(venv, "ovos-stt-server")
    if not exe.exists():
        raise FileNotFoundError(exe)
    log_path = Path(log_path or Path(xdg_config_home).resolve().parent / f"ovos-stt-server-{port}.log")
    cmd = [exe, "--engine", engine, "--host", host, "--port", str(port), *extra_args]
    proc = start_process(cmd, env=isolated_env(xdg_config_home, env), log_path=log_path,
                         ready_url=f"http://{host}:{port}/status", timeout=timeout)
    proc.url = f"http://{host}:{port}"
    proc.port = port
    if not (isinstance(proc.status, dict) and proc.status.get("status") == "ok"
            and proc.status.get("plugin") == engine):
        stop_process(proc)
        raise RuntimeError(f"unexpected /status answer {proc.status!r}")
    return proc


def stop_process(proc: subprocess.Popen, timeout: float = 10) -> Optional[int]:
    """SIGTERM the process group (uvicorn shuts down gracefully, ~2 s), SIGKILL after ``timeout``."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
    return proc.returncode


@contextlib.contextmanager
def launcher(*args, **kwargs):
    """Context-manager form of start_launcher/stop_process."""
    proc = start_launcher(*args, **kwargs)
    try:
        yield proc
    finally:
        stop_process(proc)


def run_python(venv: Path, code_or_file: str, *args: str, env: Optional[Mapping[str, str]] = None,
               timeout: float = 120) -> subprocess.CompletedProcess:
    """Run a script (path) or code string with the venv's interpreter; returns CompletedProcess."""
    target = [code_or_file] if Path(code_or_file).is_file() else ["-c", code_or_file]
    return subprocess.run([str(venv_bin(venv)), *target, *args], capture_output=True, text=True,
                          env=dict(env) if env is not None else None, timeout=timeout)
