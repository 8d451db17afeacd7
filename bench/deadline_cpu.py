"""CPU per SpeechClient.recognize against the fake Google on loopback: this tree's client against
another commit's (by default e07c3d3, before the Deadline/Call rework), measured in the same run.

    .venv/bin/python bench/deadline_cpu.py [--baseline e07c3d3] [--rounds 7] [--requests 300]

The fake runs in a process of its own, so a round's CPU (time.process_time of the client's
process: the calling thread and the alarm thread) is the client's alone. Rounds alternate
between the two clients; the report gives each one's median and the ratio new / baseline.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

FAKE = """
import sys
sys.path.insert(0, {tests!r})
from fake_google import FakeGoogle
fake = FakeGoogle().start()
print(fake.endpoint, flush=True)
sys.stdin.read()
"""

ROUND = """
import base64, json, sys, time
sys.path.insert(0, {tests!r})
from audio_samples import tone
import ovos_stt_plugin_google_apikey as package
from ovos_stt_plugin_google_apikey.client import SpeechClient
from ovos_stt_plugin_google_apikey.settings import Settings
settings = Settings.from_mapping({{"key": "test-key", "endpoint": {endpoint!r}, "retries": 0}}, env={{}})
client = SpeechClient(settings)
body = {{"config": {{"encoding": "LINEAR16", "sampleRateHertz": 16000, "languageCode": "en-US"}},
        "audio": {{"content": base64.b64encode(tone(0.5)).decode()}}}}
for _ in range(30):                       # imports, the connection, caches
    client.recognize(body, time.monotonic() + 10)
cpu, wall = time.process_time(), time.perf_counter()
for _ in range({requests}):
    client.recognize(body, time.monotonic() + 10)
cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
print(json.dumps({{"file": package.__file__, "cpu_us": cpu / {requests} * 1e6,
                  "wall_us": wall / {requests} * 1e6}}))
"""


def run_round(root: str, endpoint: str, requests: int) -> dict:
    env = dict(os.environ, PYTHONPATH=root)
    code = ROUND.format(tests=os.path.join(ROOT, "tests"), endpoint=endpoint, requests=requests)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True, timeout=300, cwd=root)   # python -c puts the cwd first
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if not result["file"].startswith(root):
        raise SystemExit(f"the round imported {result['file']}, not the package under {root}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default="e07c3d3")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="deadline-bench-") as old_root:
        package = "ovos_stt_plugin_google_apikey"
        archive = subprocess.run(["git", "-C", ROOT, "archive", args.baseline, package],
                                 capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", old_root], input=archive, check=True)
        fake = subprocess.Popen([sys.executable, "-c", FAKE.format(tests=os.path.join(ROOT, "tests"))],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            endpoint = fake.stdout.readline().strip() if fake.stdout else ""
            results: dict = {"baseline": [], "new": []}
            for _ in range(args.rounds):
                results["baseline"].append(run_round(old_root, endpoint, args.requests))
                results["new"].append(run_round(ROOT, endpoint, args.requests))
        finally:
            fake.kill()
            fake.wait()
    report = {}
    for name, rounds in results.items():
        report[name] = {key: statistics.median(r[key] for r in rounds) for key in ("cpu_us", "wall_us")}
    report["ratio_cpu_new_over_baseline"] = report["new"]["cpu_us"] / report["baseline"]["cpu_us"]
    report["ratio_wall_new_over_baseline"] = report["new"]["wall_us"] / report["baseline"]["wall_us"]
    report.update(baseline_commit=args.baseline, rounds=args.rounds, requests_per_round=args.requests,
                  load_average=os.getloadavg())
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
