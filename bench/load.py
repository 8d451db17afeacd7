"""The HTTP server under load: a real uvicorn in its own process, the fake Google in another,
clients as threads (one requests.Session each) in the benchmark's process."""
from __future__ import annotations

import base64
import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import requests
from children import KEY
from speechlike import RATE, speech_like
from stats import proc_memory, spread, summarize

CHILDREN = str(Path(__file__).resolve().parent / "children.py")


class Child:
    """A bench/children.py process; its first stdout line is what it serves on."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen([sys.executable, CHILDREN, *args], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        if not line:
            raise RuntimeError(f"bench child {args[0]} did not start (exit {self.proc.poll()})")
        self.first_line = line.split()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def drive(url: str, body: bytes, headers: Dict[str, str], clients: int, total: int,
          codes: Optional[Dict[str, int]] = None) -> Tuple[List[float], int, float]:
    """``total`` POSTs from ``clients`` threads at once: (latencies of 200s, failures, wall seconds).

    Each thread opens its connection with one unmeasured request before the clock starts.
    ``codes`` (if given) counts the failures by status code or exception name.
    """
    latencies: List[float] = []
    failures = [0]
    lock = threading.Lock()
    remaining = [total]
    start = threading.Barrier(clients + 1)

    errors: List[BaseException] = []

    def client() -> None:
        session = requests.Session()
        try:
            session.post(url, data=body, headers=headers, timeout=120)
        except requests.RequestException as exc:
            errors.append(exc)
        start.wait(timeout=300)
        while True:
            with lock:
                if remaining[0] <= 0:
                    break
                remaining[0] -= 1
            began = time.perf_counter()
            try:
                outcome = str(session.post(url, data=body, headers=headers, timeout=120).status_code)
            except requests.RequestException as exc:
                outcome = type(exc).__name__
            took = time.perf_counter() - began
            with lock:
                if outcome == "200":
                    latencies.append(took)
                else:
                    failures[0] += 1
                    if codes is not None:
                        codes[outcome] = codes.get(outcome, 0) + 1
        session.close()

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    start.wait(timeout=300)
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    if errors:
        raise RuntimeError(f"{len(errors)} of {clients} clients could not connect: {errors[0]!r}")
    return latencies, failures[0], time.perf_counter() - began


def _level(url: str, body: bytes, headers: Dict[str, str], clients: int, total: int, reps: int,
           delay: float, cap: int) -> Dict[str, Any]:
    pooled: List[float] = []
    rps, p50s, p99s, failures = [], [], [], 0
    for _ in range(reps):
        latencies, failed, wall = drive(url, body, headers, clients, total)
        failures += failed
        pooled += latencies
        rps.append(len(latencies) / wall)
        added = summarize([x - delay for x in latencies]) if latencies else {"p50": float("nan"), "p99": float("nan")}
        p50s.append(added["p50"] * 1000)
        p99s.append(added["p99"] * 1000)
    added = {k: (v * 1000 if k != "n" else v) for k, v in summarize([x - delay for x in pooled]).items()}
    ideal = clients / delay
    return {"clients": clients, "requests_per_rep": total, "failures": failures,
            "rps": spread(rps), "ideal_rps": ideal, "rps_vs_ideal": spread(rps)["median"] / ideal,
            "capped_ideal_rps": min(clients, cap) / delay,
            "added_latency_ms": added, "added_p50_ms_by_rep": spread(p50s), "added_p99_ms_by_rep": spread(p99s)}


def server_load(concurrency: Sequence[int], rounds: int, min_requests: int, reps: int, delay: float,
                clip_seconds: float, workers: int, queue: int, rss_after: Sequence[int],
                rss_clients: int, max_workers: Optional[int] = None) -> Dict[str, Any]:
    from ovos_stt_plugin_google_apikey import audio as audio_mod
    pcm = audio_mod.PCM(speech_like(clip_seconds, seed=11), RATE, 2)
    wav = audio_mod.to_wav(pcm)
    google_body = json.dumps({"config": {"encoding": "LINEAR16", "sampleRateHertz": RATE, "languageCode": "en-US"},
                              "audio": {"content": base64.b64encode(pcm.data).decode("ascii")}}).encode()
    google_headers = {"X-Goog-Api-Key": KEY, "Content-Type": "application/json; charset=utf-8"}
    wav_headers = {"Content-Type": "audio/wav"}
    server_args = ["--workers", str(workers), "--queue", str(queue)]
    if max_workers:
        server_args += ["--max-workers", str(max_workers)]
    fake = Child("fake", "--delay", str(delay))
    endpoint = fake.first_line[0]
    levels, baseline, rss = [], [], []
    try:
        server = Child("server", "--endpoint", endpoint, *server_args)
        pool_size = int(server.first_line[1])
        cap = min(workers, pool_size)
        stt = f"http://127.0.0.1:{server.first_line[0]}/stt?lang=en-US"
        try:
            for clients in concurrency:
                total = max(min_requests, rounds * clients)
                levels.append(_level(stt, wav, wav_headers, clients, total, reps, delay, cap))
                baseline.append(_level(endpoint + "/v1/speech:recognize", google_body, google_headers,
                                       clients, total, reps, delay, clients))
        finally:
            server.close()
        # RSS: a fresh server, so the request counts are its own.
        server = Child("server", "--endpoint", endpoint, *server_args)
        stt = f"http://127.0.0.1:{server.first_line[0]}/stt?lang=en-US"
        try:
            rss.append({"requests": 0, **proc_memory(server.pid)})
            done = 0
            for mark in rss_after:
                latencies, failed, _ = drive(stt, wav, wav_headers, rss_clients, mark - done)
                done = mark
                rss.append({"requests": mark, "failures": failed, **proc_memory(server.pid)})
        finally:
            server.close()
    finally:
        fake.close()
    for level, base in zip(levels, baseline):
        level["baseline_added_latency_ms"] = base["added_latency_ms"]
        level["baseline_rps"] = base["rps"]
        level["ratio_added_p50_vs_baseline"] = (level["added_latency_ms"]["p50"]
                                                / max(1e-3, base["added_latency_ms"]["p50"]))
    return {"delay_s": delay, "clip_seconds": clip_seconds, "server_workers": workers, "server_queue": queue,
            "engine_pool_size": pool_size, "reps": reps,
            "clients": "threads with one requests.Session each, in the benchmark process; the server "
                       "(uvicorn) and the fake Google each run in their own process",
            "baseline": "the same clients POSTing the equivalent Google JSON straight to the fake",
            "request": f"POST /stt?lang=en-US with a {clip_seconds:g} s 16 kHz WAV ({len(wav)} bytes)",
            "levels": levels, "rss": rss, "rss_clients": rss_clients}
