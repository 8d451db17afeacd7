"""Where a request's time goes inside `ovos-google-stt serve` (defaults), at 32 clients and at 1:
the server runs with a sitecustomize that timestamps each /stt request's stages, against a fake
Google on loopback answering in 150 ms. Then, to tell GIL contention in the server from CPU
contention on the machine: clients straight to the fake, with and without a process that burns
45 % of a core (about what the server uses at 32 clients), alternating.

    python bench/stages.py [--requests 640] [--rounds 4] [--out bench/results]

Stages: headers in -> body read and admitted -> handed to a worker thread -> worker starts ->
Google call starts -> ends -> worker ends -> the event loop resumes -> answer sent. Prints a
markdown table of medians and means in ms; --out also writes stages.md and stages.json.
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE)]

import capacity  # noqa: E402
import stats  # noqa: E402
from load import Child, drive  # noqa: E402
from speechlike import RATE, speech_like  # noqa: E402

from ovos_stt_plugin_google_apikey import audio as audio_mod  # noqa: E402

STAGES = ["headers", "admitted", "submitted", "worker", "google", "answered", "worker_done",
          "resumed", "sent"]
NAMES = ["reading and admitting the body", "decoding, to the hand-off", "waiting for the worker thread",
         "the worker, before the Google call", "the Google call", "the worker, after it",
         "waiting for the event loop", "answering (sending, releasing, logging)"]
# Wraps four of the server's methods (private: this bench follows them). Each request's
# timestamps go to a list; SIGTERM writes them to $STAGES_OUT as JSON and exits.
SITECUSTOMIZE = '''
import json, os, signal, threading, time
from ovos_stt_plugin_google_apikey import client as C
from ovos_stt_plugin_google_apikey.server import app as A
now, done, local = time.monotonic, [], threading.local()
call, stt, run, exchange = A.Pipeline.__call__, A.Pipeline.stt, A._Job.run, C.SpeechClient._exchange

async def timed_call(self, scope, receive, send):
    scope["stages"] = stages = {"headers": now()}
    await call(self, scope, receive, send)
    stages["sent"] = now()
    done.append(stages)

async def timed_stt(self, job):
    job.request.scope["stages"]["admitted"] = now()
    return await stt(self, job)

async def timed_run(self, fn, *args):
    stages = self.request.scope["stages"]
    def worker(*a):
        stages["worker"] = now()
        local.stages = stages
        try:
            return fn(*a)
        finally:
            stages["worker_done"] = now()
    stages["submitted"] = now()
    try:
        return await run(self, worker, *args)
    finally:
        stages["resumed"] = now()

def timed_exchange(self, data, c):
    stages = getattr(local, "stages", None)
    if stages is not None:
        stages.setdefault("google", now())
    try:
        return exchange(self, data, c)
    finally:
        if stages is not None:
            stages["answered"] = now()

A.Pipeline.__call__, A.Pipeline.stt, A._Job.run = timed_call, timed_stt, timed_run
C.SpeechClient._exchange = timed_exchange

def write(*_):
    with open(os.environ["STAGES_OUT"], "w") as f:
        json.dump(done, f)
    os._exit(0)

signal.signal(signal.SIGTERM, write)
'''
BURN = "import time\nwhile True:\n    t = time.perf_counter()\n    while time.perf_counter() - t < 0.0045: pass\n    time.sleep(0.0055)\n"


def staged(endpoint: str, wav: bytes, clients: int, requests: int, folder: str) -> Dict[str, Any]:
    """The server, instrumented, at ``clients``: requests/s, the client's p50, per-stage ms."""
    out = os.path.join(folder, f"stages-{clients}.json")
    os.environ["STAGES_OUT"] = out
    root = capacity.ROOT
    capacity.ROOT = f"{folder}{os.pathsep}{root}"     # type: ignore[assignment]
    try:
        server = capacity.Served(endpoint, 1)
    finally:
        capacity.ROOT = root
        del os.environ["STAGES_OUT"]
    try:
        url, headers = server.url + "/stt?lang=en-US", {"Content-Type": "audio/wav"}
        drive(url, wav, headers, clients, 2 * clients)
        since = time.monotonic()        # CLOCK_MONOTONIC: the server's clock too (Linux)
        latencies, failures, wall = drive(url, wav, headers, clients, requests)
    finally:
        server.close()
    # The measured run's requests: its ``requests`` and each client's unmeasured first one.
    run = [r for r in json.loads(Path(out).read_text()) if r["headers"] >= since]
    records = [r for r in run if all(s in r for s in STAGES)]
    if not latencies or not records:
        raise SystemExit(f"nothing measured at {clients} clients ({failures} failures)")
    stages = {}
    for name, a, b in zip(NAMES, STAGES, STAGES[1:]):
        values = [(r[b] - r[a]) * 1000 for r in records]
        stages[name] = {"p50": statistics.median(values), "mean": statistics.mean(values)}
    return {"rps": len(latencies) / wall, "client_p50_ms": statistics.median(latencies) * 1000,
            "failures": failures, "requests_seen": len(run), "requests_timed": len(records),
            "stages_ms": stages}


def burned(endpoint: str, rounds: int, requests: int) -> Dict[str, List[float]]:
    """Requests/s (and p50 ms) of 32 clients straight to the fake, with and without the burner,
    alternating."""
    from peers import KEY
    pcm = speech_like(4.5, seed=11)
    google = json.dumps({"config": {"encoding": "LINEAR16", "sampleRateHertz": RATE, "languageCode": "en-US"},
                         "audio": {"content": base64.b64encode(pcm).decode("ascii")}}).encode()
    headers = {"X-Goog-Api-Key": KEY, "Content-Type": "application/json; charset=utf-8"}
    url = endpoint + "/v1/speech:recognize"
    drive(url, google, headers, 32, 64)
    found: Dict[str, List[float]] = {"alone": [], "with the burner": [], "p50 alone": []}
    for n in range(rounds):
        for kind in ("alone", "with the burner") if n % 2 == 0 else ("with the burner", "alone"):
            burner = subprocess.Popen([sys.executable, "-c", BURN]) if kind != "alone" else None
            try:
                time.sleep(0.3)
                latencies, _, wall = drive(url, google, headers, 32, requests)
                found[kind].append(len(latencies) / wall)
                if kind == "alone":
                    found["p50 alone"].append(statistics.median(latencies) * 1000)
            finally:
                if burner is not None:
                    burner.kill()
                    burner.wait()
    return found


def markdown(result: Dict[str, Any]) -> str:
    at = result["clients"]
    lines = [f"# Where a request's time goes in the server (bench/stages.py, {result['commit']})", "",
             f"Machine: {result['machine']['cpu_model']}, {result['machine']['cores']} cores, load "
             f"{result['machine']['loadavg_at_start']}; fake Google answering in 150 ms; 4.5 s clips.", "",
             "| stage, ms (p50 / mean) | " + " | ".join(f"{n} client{'s' * (n > 1)}" for n in at) + " |",
             "|---|" + "---|" * len(at)]
    for name in NAMES:
        cells = [f"{at[n]['stages_ms'][name]['p50']:.2f} / {at[n]['stages_ms'][name]['mean']:.2f}" for n in at]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append("| requests/s | " + " | ".join(f"{at[n]['rps']:.1f}" for n in at) + " |")
    lines.append("| the client's p50 | " + " | ".join(f"{at[n]['client_p50_ms']:.1f}" for n in at) + " |")
    burn = result["burner"]
    lines += ["", "Clients straight to the fake, requests/s at 32 clients (median of "
              f"{len(burn['alone'])} alternating rounds): alone {statistics.median(burn['alone']):.1f} "
              f"(p50 {statistics.median(burn['p50 alone']):.1f} ms), with a process burning 45 % of a "
              f"core {statistics.median(burn['with the burner']):.1f}."]
    return "\n".join(lines) + "\n"


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=640, help="requests at 32 clients (and per burner round)")
    parser.add_argument("--single", type=int, default=60, help="requests at 1 client")
    parser.add_argument("--rounds", type=int, default=4, help="burner rounds")
    parser.add_argument("--out", help="a folder for stages.md and .json (default: print only)")
    args = parser.parse_args(argv)
    wav = audio_mod.to_wav(audio_mod.PCM(speech_like(4.5, seed=11), RATE, 2))
    result: Dict[str, Any] = {"machine": stats.machine(), "commit": stats.commit()}
    fake = Child("fake", "--delay", "0.15")
    try:
        with tempfile.TemporaryDirectory() as folder:
            Path(folder, "sitecustomize.py").write_text(SITECUSTOMIZE, encoding="utf-8")
            result["clients"] = {32: staged(fake.first_line[0], wav, 32, args.requests, folder),
                                 1: staged(fake.first_line[0], wav, 1, args.single, folder)}
        result["burner"] = burned(fake.first_line[0], args.rounds, args.requests)
    finally:
        fake.close()
    text = markdown(result)
    print(text)
    stats.write_results(args.out, "stages", result, text)
    return 0



if __name__ == "__main__":
    sys.exit(main())
