"""Reliability under Google's failures and under load: every call ends, in time, with the right
transcript or the documented error; nothing is lost, duplicated or left behind; bad configuration
fails at start-up; the key and the server token leak nowhere."""
from __future__ import annotations

import base64
import contextlib
import gc
import json
import logging
import os
import random
import socket
import subprocess
import sys
import threading
import time
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Dict, List, Optional, Tuple

import pytest
import requests
from audio_samples import tone, wav
from conftest import KEY, PLUGIN_ID
from fake_google import Fault
from test_server import running

from ovos_stt_plugin_google_apikey import cli, errors
from ovos_stt_plugin_google_apikey.plugin import GoogleAPIKeySTT
from ovos_stt_plugin_google_apikey.server import create_app

TIMEOUT = 1.5            # the engines' configured deadline in the fault run
MARGIN = 1.5             # a correctness bound on a shared 2-core machine, not a speed claim
RETRIES = 2
SEED = 20240611
TOKEN = "tok-MARKER-server-token-77c1"


def rss_kib(pid: Any = "self") -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def fd_count(pid: Any = "self") -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def settled_fd_count(pid: int, expected: int, seconds: float = 15) -> int:
    """``pid``'s fd count once it is at most ``expected``, or after ``seconds`` whatever it is."""
    settle = time.monotonic() + seconds
    while (count := fd_count(pid)) > expected and time.monotonic() < settle:
        time.sleep(0.2)
    return count


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def settle(measure: Callable[[], int], target: int, seconds: float = 6.0) -> int:
    """``measure()`` once it is at most ``target``, or its value after ``seconds``.

    Hung or trickling fake handlers, and connections a client dropped, end a few seconds after
    the call that used them: the count is read once they had the time to, not while they run.
    """
    deadline = time.monotonic() + seconds
    while True:
        gc.collect()
        value = measure()
        if value <= target or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


# ------------------------------------------------------------------ 1. mixed faults, in time

# name -> (faults scripted for the call, error class (None: the transcript), Google requests made).
# With retries=2 and a 1.5 s deadline. The error class is exact: a hang must be a DeadlineError,
# a 503 that never ends an UnavailableError but not a DeadlineError.
SCENARIOS: Dict[str, Tuple[Callable[[], List[Fault]], Optional[type], int]] = {
    "ok": (lambda: [], None, 1),
    "500-then-ok": (lambda: [Fault.http(500)], None, 2),
    "503-then-ok": (lambda: [Fault.http(503)], None, 2),
    "504-then-ok": (lambda: [Fault.http(504)], None, 2),
    "503-every-time": (lambda: [Fault.http(503)] * 3, errors.UnavailableError, 3),
    "429-retry-after": (lambda: [Fault.http(429, retry_after=0.1)], None, 2),
    "429-no-retry-after": (lambda: [Fault.http(429)], None, 2),
    "429-past-deadline": (lambda: [Fault.http(429, retry_after=30)], errors.QuotaError, 1),
    "reset": (lambda: [Fault.reset()], None, 2),
    "drop": (lambda: [Fault.drop()], None, 2),
    "hang": (lambda: [Fault.hang(3)], errors.DeadlineError, 1),
    "trickle": (lambda: [Fault.trickle(3)], errors.DeadlineError, 1),
    "html-then-ok": (lambda: [Fault.html()], None, 2),
    "truncated-then-ok": (lambda: [Fault.truncated()], None, 2),
    "unreadable-every-time": (lambda: [Fault.html(), Fault.truncated(), Fault.html()],
                              errors.UnavailableError, 3),
    "shape": (lambda: [Fault.shape()], errors.UnavailableError, 1),
    "refused": (lambda: [], errors.UnavailableError, 0),       # an engine on a closed port
    "dns": (lambda: [], errors.UnavailableError, 0),           # an engine on a .invalid host
}
# Relative frequency in the random part of the run. Hangs and trickles cost the whole deadline
# and 5xx/429 retries a backoff (0.12-0.25 s), so they are rarer than plain successes.
WEIGHTS = {"ok": 70, "hang": 1, "trickle": 1, "refused": 1.5, "dns": 1.5, "503-every-time": 1.5,
           "unreadable-every-time": 1.5}
SERVER_STATUS = {None: 200, errors.DeadlineError: 504, errors.UnavailableError: 503,
                 errors.QuotaError: 503}
NEEDS_OWN_ENGINE = ("refused", "dns")
SERVER_WARM_UP = ("ok", "503-then-ok", "429-past-deadline", "shape")


def fault_plan(size: int, via_server: float, rng: random.Random) -> List[Tuple[str, str]]:
    """(scenario, "plugin"|"server") for each call: every scenario at least once each way it
    can go, the rest drawn by weight, all shuffled."""
    names = list(SCENARIOS)
    plan = [(name, "plugin") for name in names]
    plan += [(name, "server") for name in names if name not in NEEDS_OWN_ENGINE]
    weights = [WEIGHTS.get(name, 3) for name in names]
    while len(plan) < size:
        name = rng.choices(names, weights)[0]
        server = name not in NEEDS_OWN_ENGINE and rng.random() < via_server
        plan.append((name, "server" if server else "plugin"))
    rng.shuffle(plan)
    return plan


@pytest.mark.slow
def test_mixed_google_faults_end_in_time_with_the_right_answer_and_leave_nothing_behind(fake):
    rng = random.Random(SEED)
    config = {"key": KEY, "endpoint": fake.endpoint, "lang": "en-US", "timeout": TIMEOUT,
              "retries": RETRIES}
    engine = GoogleAPIKeySTT(config)
    server_engine = GoogleAPIKeySTT(config)
    others = {"refused": GoogleAPIKeySTT({**config, "endpoint": f"http://127.0.0.1:{closed_port()}"}),
              "dns": GoogleAPIKeySTT({**config, "endpoint": "https://no-such-host.invalid"})}
    speech = tone(4.0)
    plan = fault_plan(200, via_server=0.2, rng=rng)
    figures: Dict[str, Any] = {}

    with running(create_app(server_engine)) as url, requests.Session() as http:

        def one(index: int, name: str, via: str) -> None:
            faults, expected, attempts = SCENARIOS[name]
            seconds = round(0.10 + 0.01 * index, 2)         # the transcript names the call
            pcm = speech[:int(seconds * 16000) * 2]
            heard = f"audio {seconds:.2f} seconds at 16000 hertz"
            before = len(fake.requests)
            fake.script(*faults())
            started = time.monotonic()
            if via == "server":
                reply = http.post(f"{url}/stt", data=wav(pcm), timeout=30)
                took = time.monotonic() - started
                assert reply.status_code == SERVER_STATUS[expected], (index, name, reply.text)
                if expected is None:
                    assert reply.text == heard, (index, name)
                else:
                    assert reply.text.strip() and reply.text.count("\n") == 1, (index, name)
                if name == "429-past-deadline":
                    assert reply.headers["retry-after"] == "30"
            else:
                outcome: Any
                try:
                    outcome = others.get(name, engine).execute(pcm)
                except errors.GoogleSTTError as exc:
                    outcome = exc
                took = time.monotonic() - started
                if expected is None:
                    assert outcome == heard, (index, name, outcome)
                else:
                    assert type(outcome) is expected, (index, name, repr(outcome))
            assert took <= TIMEOUT + MARGIN, (index, name, via, took)
            if name == "429-past-deadline":
                assert took < 1.0, (index, took)      # failed at once, no sleep toward 30 s
            # Exactly the attempts the fault calls for: none lost, none repeated, and no
            # scripted fault left over to spill into the next call.
            assert len(fake.requests) - before == attempts, (index, name, via)
            # The fake keeps every body it received; forget them, or they would be the growth
            # the RSS comparison below sees.
            with fake._lock:
                fake.requests.clear()

        # Warm up every path once (lazy imports, pools, first connections), then measure.
        # (Hangs and trickles run no code the others do not, and cost the whole deadline.)
        for name, via in fault_plan(0, 0, random.Random(0)):
            if name not in ("hang", "trickle") and (via == "plugin" or name in SERVER_WARM_UP):
                one(0, name, via)
        gc.collect()
        threads, fds, rss = threading.active_count(), fd_count(), rss_kib()
        tracemalloc.start()
        started = time.monotonic()
        for index, (name, via) in enumerate(plan, start=1):
            one(index, name, via)
        figures["run_seconds"] = time.monotonic() - started
        # Slack: the fake's hung/trickling handlers end up to 3 s after their call (settle
        # waits for them); keep-alive connections may be a different but equal-sized set.
        # 2 threads and 4 fds of slack would still catch one left behind per failing call
        # (~80 of them in this run).
        threads_after = settle(threading.active_count, threads)
        fds_after = settle(fd_count, fds)
        gc.collect()
        python_after = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        rss_after = rss_kib()
    for other in others.values():
        other.shutdown()
    engine.shutdown()
    server_engine.shutdown()
    counts = {name: sum(1 for n, _ in plan if n == name) for name in SCENARIOS}
    print(f"\n{len(plan)} calls ({sum(1 for _, v in plan if v == 'server')} via the server) in "
          f"{figures['run_seconds']:.1f} s; threads {threads}->{threads_after}, fds {fds}->{fds_after}, "
          f"RSS {rss} KiB->{rss_after} KiB, Python objects allocated during the run and still "
          f"alive {python_after // 1024} KiB; scenarios {counts}")
    assert threads_after <= threads + 2
    assert fds_after <= fds + 4
    # Memory, two ways. tracemalloc: Python objects allocated during the run and still alive at
    # its end; the fake's own bookkeeping keeps ~0.5 KiB a call, 1 MiB of slack covers that,
    # while keeping one call's audio (10-80 KiB) or its exception and traceback would exceed it.
    # RSS: the C allocator keeps freed arenas and the measurement shares the process with the
    # fake, so it gets a loose bound against gross leaks only.
    assert python_after <= 1024 * 1024
    assert rss_after - rss <= 32 * 1024


# ------------------------------------------------------------------ 2. load through the server

LOAD_REQUESTS = 1000
LOAD_CLIENTS = 64
IN_FLIGHT = 8               # --workers: at most this many calls to Google at once
LOAD_RATES = (8000, 11025, 12000, 16000, 20000, 22050, 24000, 32000, 44100, 48000)
LOAD_FAULTS = (lambda: Fault.http(503), lambda: Fault.http(500), lambda: Fault.http(504),
               lambda: Fault.http(429, retry_after=0.2), lambda: Fault.http(429), Fault.reset,
               Fault.drop, Fault.html, Fault.truncated, Fault.shape, lambda: Fault.hang(4))


def load_audio(index: int, tones: Dict[int, bytes]) -> Tuple[bytes, str]:
    """Request ``index``'s WAV and the transcript that names it: (rate, length) is unique."""
    rate = LOAD_RATES[index % len(LOAD_RATES)]
    seconds = round(0.10 + 0.01 * (index // len(LOAD_RATES)), 2)
    pcm = tones[rate][:round(seconds * rate) * 2]
    return wav(pcm, rate), f"audio {seconds:.2f} seconds at {rate} hertz"


def heard_by_fake(recorded: Any) -> str:
    config, content = recorded.json["config"], recorded.json["audio"]["content"]
    rate = config["sampleRateHertz"]
    return f"audio {len(base64.b64decode(content)) / 2 / rate:.2f} seconds at {rate} hertz"


@contextlib.contextmanager
def serve_subprocess(args: List[str], env: Dict[str, str]):
    """``python -m ...cli serve`` on a free port; yields (url, process)."""
    port = closed_port()
    environ = {k: v for k, v in os.environ.items()
               if k not in ("GOOGLE_STT_API_KEY", "STT_PW", "GOOGLE_STT_SERVER_TOKEN")}
    command = [sys.executable, "-m", "ovos_stt_plugin_google_apikey.cli", "serve",
               "--port", str(port), *args]
    url = f"http://127.0.0.1:{port}"
    with subprocess.Popen(command, env={**environ, **env}, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True) as process:
        # Drain the log as it comes: 1,000 request lines would fill the pipe and block the server.
        log: List[str] = []
        reader = threading.Thread(target=lambda: log.extend(process.stderr), daemon=True)
        reader.start()
        try:
            deadline = time.monotonic() + 60
            while True:
                assert process.poll() is None, "".join(log)
                assert time.monotonic() < deadline, "the server did not come up"
                with contextlib.suppress(requests.ConnectionError):
                    requests.get(f"{url}/", timeout=1)
                    break
                time.sleep(0.05)
            yield url, process, log
        finally:
            process.terminate()
            process.wait(10)
            reader.join(5)


@pytest.mark.slow
def test_a_thousand_requests_from_64_clients_with_google_faults(fake, tmp_path):
    rng = random.Random(SEED)
    tones = {rate: tone(1.2, rate) for rate in LOAD_RATES}
    faulty = dict.fromkeys(rng.sample(range(LOAD_REQUESTS), LOAD_REQUESTS // 20))
    for index in faulty:
        faulty[index] = rng.choice(LOAD_FAULTS)
    (tmp_path / "conf.json").write_text(json.dumps({"lang": "en-US", "retries": RETRIES}))
    args = ["--endpoint", fake.endpoint, "--config", str(tmp_path / "conf.json"), "--timeout", "3",
            "--workers", "8", "--queue", "8"]           # capacity 16 < 64 clients: back-pressure
    results: Dict[int, requests.Response] = {}
    busy: List[Tuple[requests.Response, float]] = []
    samples: Dict[str, Tuple[int, int]] = {}
    lock = threading.Lock()
    todo = iter(range(LOAD_REQUESTS))
    fake.delay = 0.005

    with serve_subprocess(args, {"GOOGLE_STT_API_KEY": KEY}) as (url, process, log):
        idle_fds = fd_count(process.pid)        # up and answered one GET: no upload, no Google

        def client(_: int) -> None:
            with requests.Session() as http:
                while True:
                    with lock:
                        index = next(todo, None)
                    if index is None:
                        return
                    if index in faulty:
                        fake.script(faulty[index]())
                    body = load_audio(index, tones)[0]
                    for _try in range(200):
                        started = time.monotonic()
                        reply = http.post(f"{url}/stt", data=body, timeout=30)
                        if reply.status_code != 503 or "busy" not in reply.text:
                            break
                        with lock:
                            busy.append((reply, time.monotonic() - started))
                        time.sleep(rng.uniform(0.01, 0.05))
                    with lock:
                        results[index] = reply
                        if len(results) == 100:
                            samples["first"] = (rss_kib(process.pid), 0)

        started = time.monotonic()
        with ThreadPoolExecutor(LOAD_CLIENTS) as pool:
            list(pool.map(client, range(LOAD_CLIENTS)))
        took = time.monotonic() - started
        # Every client has hung up. Once the server has seen them go and the last hang (4 s)
        # has ended, it holds what it held idle plus the keep-alive connections to Google its
        # 8 workers used at once (its pool holds up to 16, but only 8 are ever in use), and
        # one of slack: the readiness GET's socket may be in the idle count. Sampling while
        # connections came and went counted them too (54 -> 79 fds in one CI run), so the
        # count is taken settled.
        samples["last"] = (rss_kib(process.pid), settled_fd_count(process.pid, idle_fds + IN_FLIGHT + 1))
        samples["first"] = (samples["first"][0], idle_fds)
        assert process.poll() is None, "".join(log)

    statuses = [results[i].status_code for i in range(LOAD_REQUESTS)]     # every one answered
    by_status = {code: statuses.count(code) for code in set(statuses)}
    print(f"\n{LOAD_REQUESTS} requests, {LOAD_CLIENTS} clients, {len(faulty)} faults: {took:.1f} s, "
          f"answers {by_status}, {len(busy)} busy refusals, {len(fake.requests)} Google requests; "
          f"server RSS {samples['first'][0]}->{samples['last'][0]} KiB, "
          f"fds {samples['first'][1]}->{samples['last'][1]}")
    assert set(statuses) <= {200, 503, 504}, by_status
    for index, reply in results.items():
        if reply.status_code == 200:
            assert reply.text == load_audio(index, tones)[1], index
        else:
            assert reply.text.strip() and "busy" not in reply.text, (index, reply.text)
    assert busy, "the run was meant to overflow workers + queue"
    for reply, seconds in busy:
        assert reply.headers["retry-after"] == "1" and seconds < 2.0

    # What reached Google: each request at most 1 + retries times, none that was never sent,
    # none that was refused as busy.
    asked: Dict[str, int] = {}
    for recorded in fake.requests:
        text = heard_by_fake(recorded)
        asked[text] = asked.get(text, 0) + 1
    expected = {load_audio(i, tones)[1]: i for i in range(LOAD_REQUESTS)}
    assert set(asked) <= set(expected)
    assert max(asked.values()) <= 1 + RETRIES
    for text, index in expected.items():
        if statuses[index] == 200:
            assert asked.get(text, 0) >= 1
    # Conservation: every Google request was a scripted fault, the one success behind a 200,
    # or (only for a 504) an answer that came after the deadline. Nothing lost, none twice.
    consumed = len(faulty) - len(fake._faults)
    n200, n504 = statuses.count(200), statuses.count(504)
    assert n200 + consumed <= len(fake.requests) <= n200 + consumed + n504
    # No fd kept per request, nor per fault: settled, the server holds at most its idle fds
    # plus one connection per worker (here 8 -> 15 of at most 17). A leak of one fd per
    # request would be ~1,000; one per fault of a single kind (4-8 of each) shows too. Memory flat between the first and the last
    # hundred answers: Python's allocator keeps freed arenas, and the server holds whole
    # bodies before admission, so its arenas settle higher: 15 MiB of growth over these 900
    # requests, 20 MiB over 3,900 (measured, a plateau, not a slope). A leak of one upload
    # (~40 KiB) per request would be ~36 MiB.
    assert samples["last"][1] <= idle_fds + IN_FLIGHT + 1, samples
    assert samples["last"][0] - samples["first"][0] <= 26 * 1024


# ------------------------------------------------------------------ 5. bad configuration

# Every setting with values it must refuse, and the text the refusal must carry.
BAD_SETTINGS = [
    ("key", 12345, "'key' must be a string"),
    ("key", ["AIza"], "'key' must be a string"),
    ("lang", 5, "'lang' must be a string"),
    ("endpoint", "speech.googleapis.com", "'endpoint' must be an http(s) base URL"),
    ("endpoint", "ftp://speech.googleapis.com", "'endpoint' must be an http(s) base URL"),
    ("endpoint", "https://x/?key=1", "'endpoint' must be an http(s) base URL"),
    ("endpoint", "https://x/#frag", "'endpoint' must be an http(s) base URL"),
    ("endpoint", 443, "'endpoint' must be an http(s) base URL"),
    ("model", "latest-short", "'model' must be one of latest_short"),
    ("model", ["latest_short"], "'model' must be one of"),
    ("use_enhanced", "yes", "'use_enhanced' must be true or false"),
    ("punctuation", 1, "'punctuation' must be true or false"),
    ("profanity_filter", None, "'profanity_filter' must be true or false"),
    ("phrases", "Mycroft", "'phrases' must be a list of strings"),
    ("phrases", ["ok", 3], "each of 'phrases' must be a non-empty string"),
    ("phrases", ["x" * 101], "at most 100 characters"),
    ("boost", 20.5, "'boost' must be a number from 0 to 20"),
    ("boost", "high", "'boost' must be a number"),
    ("max_alternatives", 0, "'max_alternatives' must be a whole number from 1 to 30"),
    ("max_alternatives", 2.5, "'max_alternatives' must be a whole number"),
    ("timeout", 0.1, "'timeout' must be a number from 0.5 to 300"),
    ("timeout", 301, "'timeout' must be a number from 0.5 to 300"),
    ("timeout", "10", "'timeout' must be a number"),
    ("retries", -1, "'retries' must be a whole number from 0 to 10"),
    ("retries", True, "'retries' must be a whole number"),
    ("encoding", "LINEAR16", "'encoding' must be one of linear16, flac, ogg_opus"),
    ("encoding", "mp3", "'encoding' must be one of"),
    ("max_workers", 0, "'max_workers' must be a whole number from 1 to 16"),
    ("max_workers", 17, "'max_workers' must be a whole number from 1 to 16"),
    ("auto_languages", "en-US", "'auto_languages' must be a list of language tags"),
    ("auto_languages", ["en-US", ""], "'auto_languages' must be a list of language tags"),
    ("auto_languages", [1], "'auto_languages' must be a list of language tags"),
]
BAD_IDS = [f"{name}={value!r}"[:40] for name, value, _ in BAD_SETTINGS]


# OPM itself normalises 'lang' (and crashes on a non-string) before the plugin is built.
@pytest.mark.parametrize("name, value, says", [s for s in BAD_SETTINGS if s[0] != "lang"],
                         ids=[i for i, s in zip(BAD_IDS, BAD_SETTINGS) if s[0] != "lang"])
def test_every_bad_setting_fails_loading_through_ovos(make_engine, name, value, says):
    with pytest.raises(errors.ConfigError) as err:
        make_engine(**{name: value})
    assert says in str(err.value)
    if name != "key":
        assert KEY not in str(err.value)


def serve_main(argv: List[str], capsys: Any) -> Tuple[int, str]:
    """``ovos-google-stt serve ...`` in this process, up to the point it would listen."""
    try:
        code = cli.main(["serve", "--port", str(closed_port()), *argv])
    except SystemExit as exc:                      # argparse's own refusals
        code = exc.code
    return code, capsys.readouterr().err


@pytest.mark.parametrize("name, value, says", BAD_SETTINGS, ids=BAD_IDS)
def test_every_bad_setting_in_the_config_file_stops_serve_with_status_2(tmp_path, capsys,
                                                                          name, value, says):
    config = tmp_path / "conf.json"
    # The whole-mycroft.conf form; the bare-section form is covered below.
    config.write_text(json.dumps({"stt": {PLUGIN_ID: {"key": KEY, name: value}}}))
    code, err = serve_main(["--config", str(config)], capsys)
    assert code == 2
    assert err.startswith("ovos-google-stt: ") and says in err
    assert "Traceback" not in err and (name == "key" or KEY not in err)


@pytest.mark.parametrize("argv, says", [
    (["--config", "/nonexistent/conf.json"], "cannot read --config /nonexistent/conf.json"),
    (["--config", "{conf}"], "must hold a JSON object"),             # a JSON list
    (["--config", "{junk}"], "cannot read --config"),                # not JSON at all
    (["--config", "{section}", "--timeout", "0"], "'timeout' must be a number from 0.5"),
    (["--config", "{section}", "--model", "nope"], "'model' must be one of"),
    (["--config", "{section}", "--endpoint", "speech.googleapis.com"], "'endpoint' must be"),
    (["--config", "{section}", "--lang", "not a tag!"], "--lang must be a language tag"),
    (["--config", "{section}", "--token-file", "{empty}"], "is empty"),
    (["--config", "{section}", "--token-file", "/nonexistent/token"], "cannot read --token-file"),
    (["--config", "{section}", "--workers", "0"], "--workers: must be at least 1"),
    (["--config", "{section}", "--queue", "-1"], "--queue: must be at least 0"),
    (["--config", "{section}", "--max-body", "lots"], "--max-body: must be a whole number"),
    (["--config", "{section}", "--timeout", "soon"], "--timeout: invalid float value"),
], ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_serve_refuses_bad_files_and_flags_with_status_2(tmp_path, capsys, argv, says):
    files = {"conf": "[1, 2]", "junk": "key = 'x'", "section": json.dumps({"key": KEY}), "empty": " \n"}
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    argv = [a.format(**{n: str(tmp_path / n) for n in files}) for a in argv]
    code, err = serve_main(argv, capsys)
    assert code == 2
    assert says in err and "Traceback" not in err and KEY not in err


def test_serve_bad_config_as_a_real_command_exits_2_before_listening(tmp_path):
    (tmp_path / "conf.json").write_text(json.dumps({"key": KEY, "max_workers": 99}))
    port = closed_port()
    done = subprocess.run([sys.executable, "-m", "ovos_stt_plugin_google_apikey.cli", "serve",
                           "--port", str(port), "--config", str(tmp_path / "conf.json")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "'max_workers' must be a whole number from 1 to 16" in done.stderr
    assert "Traceback" not in done.stderr and KEY not in done.stderr
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        pass                                          # it never listened


# ------------------------------------------------------------------ 6. the key and the token

MARKER = "AIzaSy-MARKER-reliability-5e1f0c"


def test_key_and_token_leak_nowhere_under_faults_bad_input_and_bad_config(fake, caplog, capsys,
                                                                         tmp_path):
    """A representative mix of everything above with every logger at DEBUG."""
    caplog.set_level(logging.DEBUG)                   # the root logger: urllib3, uvicorn included
    fake.valid_keys = {MARKER}
    config = {"key": MARKER, "endpoint": fake.endpoint, "lang": "en-US", "timeout": TIMEOUT,
              "retries": 1}
    engine = GoogleAPIKeySTT(config)
    texts: List[str] = [repr(engine), str(engine.settings), repr(engine.recognizer.client)]
    auth = {"Authorization": f"Bearer {TOKEN}"}

    def keep(exc: BaseException) -> None:
        chain: Optional[BaseException] = exc
        while chain is not None:                     # the whole chain, as a traceback shows it
            texts.extend([str(chain), repr(chain), *map(str, chain.args)])
            chain = chain.__cause__ or chain.__context__

    # Through the plugin: success, and each kind of failure.
    faults = [[], [Fault.http(503)], [Fault.http(429, retry_after=30)], [Fault.hang(3)],
              [Fault.trickle(3)], [Fault.reset(), Fault.drop()], [Fault.html(), Fault.truncated()],
              [Fault.shape()]]
    for script in faults:
        fake.script(*script)
        try:
            texts.append(engine.execute(tone(0.3)))
        except errors.GoogleSTTError as exc:
            keep(exc)
    for kind in ("invalid", "restricted", "disabled", "key_type"):
        fake.key_errors[MARKER] = kind
        with pytest.raises(errors.CredentialsError) as err:
            engine.execute(tone(0.3))
        keep(err.value)
    fake.key_errors.clear()
    for endpoint in (f"http://127.0.0.1:{closed_port()}", "https://no-such-host.invalid"):
        other = GoogleAPIKeySTT({**config, "endpoint": endpoint, "retries": 0})
        with pytest.raises(errors.UnavailableError) as err:
            other.execute(tone(0.3))
        keep(err.value)
        other.shutdown()
    for bad in (b"RIFF" + bytes(40), b"", object()):
        with pytest.raises(errors.AudioError) as err:
            engine.execute(bad)
        keep(err.value)
    for name, value, _ in BAD_SETTINGS:
        with pytest.raises(errors.ConfigError) as err:
            GoogleAPIKeySTT({**config, name: value} if name != "key" else {**config, "lang": 5})
        keep(err.value)

    # Through a real server with a token: each kind of answer, headers and bodies.
    replies: List[requests.Response] = []
    with running(create_app(engine, token=TOKEN)) as url:
        def post(path: str, **kw: Any) -> None:
            replies.append(requests.post(f"{url}{path}", timeout=10, **kw))

        post("/stt", data=wav(tone(0.3)), headers=auth)
        post("/stt", data=wav(tone(0.3)))
        post("/stt", data=wav(tone(0.3)), headers={"Authorization": "Bearer " + TOKEN[:-1]})
        post("/stt", data=b"RIFFjunk", headers=auth, params={"lang": "%%%"})
        post("/stt", files={"sound": ("x.wav", b"x")}, headers=auth)
        post("/stt/json", data=b"{not json", headers=auth)
        for script in ([Fault.http(503)] * 2, [Fault.http(429, retry_after=5)], [Fault.hang(3)],
                       [Fault.shape()]):
            fake.script(*script)
            post("/stt/json", json={"audio_b64": base64.b64encode(wav(tone(0.3))).decode()},
                 headers=auth)
        fake.key_errors[MARKER] = "restricted"
        post("/lang_detect", params={"valid_langs": "en-US,pt-PT"}, data=wav(tone(0.3)), headers=auth)
        fake.key_errors.clear()
        replies.append(requests.get(f"{url}/status", timeout=5))
    engine.shutdown()
    codes = [r.status_code for r in replies]
    assert codes == [200, 401, 401, 400, 400, 400, 503, 503, 504, 503, 502, 200], codes
    assert fake.requests and all(r.headers["X-Goog-Api-Key"] == MARKER for r in fake.requests)

    # And the command line refusing a bad config that holds the key.
    (config_file := tmp_path / "conf.json").write_text(json.dumps({"key": MARKER, "timeout": -1}))
    code, err = serve_main(["--config", str(config_file)], capsys)
    assert code == 2
    texts.append(err)

    for reply in replies:
        texts += [reply.text, *map(str, reply.headers.items())]
    texts += [caplog.text, *(r.getMessage() for r in caplog.records)]
    texts += [r.body.decode("latin-1") + r.path + str(r.query) for r in fake.requests]
    assert "urllib3" in caplog.text and "uvicorn" in caplog.text    # DEBUG really was on
    leaks = [t for t in texts if MARKER in t or TOKEN in t]
    assert not leaks, leaks[:3]


def raw_request(port: int, head: bytes, wait: float = 5.0) -> Tuple[bytes, float]:
    """Send only the request head; the answer and how long it took."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as conn:
        started = time.monotonic()
        conn.sendall(head)
        answer = b""
        with contextlib.suppress(socket.timeout):
            while b"\r\n\r\n" not in answer:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                answer += chunk
        return answer, time.monotonic() - started


@pytest.mark.parametrize("authorization", [b"", b"Authorization: Bearer wrong\r\n",
                                           b"Authorization: " + TOKEN.encode() + b"\r\n"],
                         ids=["missing", "wrong", "no-bearer"])
@pytest.mark.parametrize("path", [b"/stt", b"/stt/json", b"/lang_detect?valid_langs=en-US,pt-PT"])
def test_a_50mb_upload_without_the_token_is_refused_before_its_body(fake, path, authorization):
    engine = GoogleAPIKeySTT({"key": KEY, "endpoint": fake.endpoint, "lang": "en-US"})
    with running(create_app(engine, token=TOKEN)) as url:
        port = int(url.rsplit(":", 1)[1])
        head = (b"POST " + path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: audio/wav\r\n"
                b"Content-Length: 52428800\r\n" + authorization + b"\r\n")
        answer, took = raw_request(port, head)
        # Expect: 100-continue is how a careful client asks before sending; it must not be told to.
        continued, _ = raw_request(port, head[:-2] + b"Expect: 100-continue\r\n\r\n")
    engine.shutdown()
    assert answer.startswith(b"HTTP/1.1 401 "), answer[:200]
    assert took < 2.0                                   # not a byte of the 50 MB was sent
    assert continued.startswith(b"HTTP/1.1 401 "), continued[:200]
    assert b"100 Continue" not in continued
    assert fake.requests == []


def test_oversized_uploads_of_every_kind_are_cut_off_with_413(fake):
    """test_server covers a chunked raw body; multipart and JSON bodies go through another
    reader (the form parser), and the right token must not let the limit be skipped."""
    limit = 64 * 1024
    engine = GoogleAPIKeySTT({"key": KEY, "endpoint": fake.endpoint, "lang": "en-US"})
    auth = b"Authorization: Bearer " + TOKEN.encode() + b"\r\n"
    answers = {}
    with running(create_app(engine, token=TOKEN, max_body=limit)) as url:
        port = int(url.rsplit(":", 1)[1])
        answers["declared"], _ = raw_request(
            port, b"POST /stt HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 500000000\r\n" + auth + b"\r\n")
        for name, kind, prefix in (
                ("multipart", b"multipart/form-data; boundary=XyZ",
                 b'--XyZ\r\nContent-Disposition: form-data; name="audio"; filename="a.wav"\r\n'
                 b"Content-Type: audio/wav\r\n\r\n"),
                ("json", b"application/json", b'{"audio_b64": "')):
            path = b"/stt/json" if name == "json" else b"/stt"
            with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
                conn.sendall(b"POST " + path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: " + kind
                             + b"\r\nTransfer-Encoding: chunked\r\n" + auth + b"\r\n")
                conn.sendall(b"%x\r\n%s\r\n" % (len(prefix), prefix))
                chunk = b"A" * 16384
                with contextlib.suppress(OSError):    # the server may close while we send
                    for _ in range(8):                 # 128 KiB, twice the limit, never ending
                        conn.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                answers[name] = conn.recv(65536)
                # It stopped reading: 100 MB more cannot be pushed into the connection.
                with pytest.raises(OSError):
                    for _ in range(100 * 1024 * 1024 // len(chunk)):
                        conn.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
    engine.shutdown()
    for name, answer in answers.items():
        assert answer.startswith(b"HTTP/1.1 413 "), (name, answer[:200])
        assert b"connection: close" in answer.lower(), name      # the rest will not be read
    assert fake.requests == []
