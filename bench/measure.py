"""In-process measurements against a fake Google on loopback: plugin overhead, long audio,
upload size and connection reuse."""
from __future__ import annotations

import base64
import json
import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, List, Sequence

import requests
from children import KEY, engine_config, start_fake
from speech_recognition import AudioData
from speechlike import DESCRIPTION, RATE, espeak_utterance, speech_like
from stats import spread, summarize

ENCODINGS = ("linear16", "flac", "ogg_opus")


def _engine(endpoint: str, **extra: Any) -> Any:
    from ovos_stt_plugin_google_apikey.plugin import GoogleAPIKeySTT
    return GoogleAPIKeySTT(engine_config(endpoint, **extra))


def _ms(values: List[float]) -> Dict[str, float]:
    return {k: (v * 1000 if k != "n" else v) for k, v in summarize(values).items()}


def plugin_overhead(durations: Sequence[float], reps: int, delay: float, blocks: int = 3) -> Dict[str, Any]:
    """transcribe() time minus the fake's delay, against a bare requests.post of the same audio."""
    from ovos_stt_plugin_google_apikey import audio as audio_mod
    from ovos_stt_plugin_google_apikey import encoders
    fake = start_fake(delay)
    session = requests.Session()
    headers = {"X-Goog-Api-Key": KEY, "Content-Type": "application/json; charset=utf-8"}
    rows = []
    try:
        for encoding in ENCODINGS:
            engine = _engine(fake.endpoint, encoding=encoding)
            for seconds in durations:
                pcm = speech_like(seconds, seed=int(seconds))
                audio = AudioData(pcm, RATE, 2)
                encoded = encoders.encode(audio_mod.PCM(pcm, RATE, 2), encoding)

                def bare(encoded: Any = encoded) -> None:
                    # The bare minimum: the same audio, already encoded, in a body built inline.
                    body = json.dumps({"config": {"encoding": encoded.encoding,
                                                  "sampleRateHertz": encoded.sample_rate,
                                                  "languageCode": "en-US"},
                                       "audio": {"content": base64.b64encode(encoded.data).decode("ascii")}})
                    response = session.post(fake.url, data=body, headers=headers, timeout=30)
                    response.raise_for_status()
                    response.json()

                def ours(engine: Any = engine, audio: Any = audio) -> None:
                    if not engine.transcribe(audio):
                        raise RuntimeError("the plugin heard nothing; the benchmark is broken")

                def encode_only(pcm: bytes = pcm, encoding: str = encoding) -> None:
                    encoders.encode(audio_mod.PCM(pcm, RATE, 2), encoding)

                for _ in range(3):                      # warm-up: connections, imports, caches
                    ours()
                    bare()
                timings: Dict[str, List[float]] = {"plugin": [], "baseline": [], "encode": []}
                for i in range(reps):
                    order = [("plugin", ours), ("baseline", bare)]
                    for name, fn in (order if i % 2 == 0 else order[::-1]):   # no order bias
                        started = time.perf_counter()
                        fn()
                        timings[name].append(time.perf_counter() - started - delay)
                    started = time.perf_counter()
                    encode_only()
                    timings["encode"].append(time.perf_counter() - started)
                plugin, baseline = _ms(timings["plugin"]), _ms(timings["baseline"])
                size = max(1, reps // blocks)
                block_p50 = [summarize(timings["plugin"][b:b + size])["p50"] * 1000
                             for b in range(0, size * blocks, size) if timings["plugin"][b:b + size]]
                rows.append({"encoding": encoding, "seconds": seconds, "plugin_ms": plugin,
                             "baseline_ms": baseline, "encode_ms": _ms(timings["encode"]),
                             "net_ms_p50": plugin["p50"] - baseline["p50"],
                             "ratio_p50": plugin["p50"] / baseline["p50"],
                             "ratio_p95": plugin["p95"] / baseline["p95"],
                             "plugin_p50_by_block_ms": spread(block_p50)})
            engine.shutdown()
    finally:
        session.close()
        fake.stop()
    return {"delay_s": delay, "reps": reps, "audio": "speech-like, 16 kHz mono int16",
            "baseline": "one pooled requests.Session; requests.post of the already-encoded audio in a "
                        "JSON body built inline (base64 + json.dumps timed; codec time not)",
            "rows": rows}


def long_audio(minutes: float, workers: Sequence[int], delay: float, reps: int) -> Dict[str, Any]:
    """Wall time of one long recording at each max_workers; speed-up against max_workers=1."""
    fake = start_fake(delay)
    pcm = speech_like(minutes * 60, seed=5)
    audio = AudioData(pcm, RATE, 2)
    rows = []
    try:
        for count in workers:
            engine = _engine(fake.endpoint, max_workers=count)
            engine.transcribe(AudioData(pcm[:RATE * 4], RATE, 2))     # warm-up
            walls, parts = [], 0
            for _ in range(reps):
                before = len(fake.requests)
                started = time.perf_counter()
                if not engine.transcribe(audio):
                    raise RuntimeError("the plugin heard nothing; the benchmark is broken")
                walls.append(time.perf_counter() - started)
                parts = len(fake.requests) - before
            engine.shutdown()
            rows.append({"max_workers": count, "wall_s": spread(walls), "requests": parts,
                         "ideal_s": math.ceil(parts / count) * delay})
    finally:
        fake.stop()
    base = rows[0]["wall_s"]["median"]
    for row in rows:
        row["speedup"] = base / row["wall_s"]["median"]
        row["fraction_of_1"] = row["wall_s"]["median"] / base
    return {"minutes": minutes, "delay_s": delay,
            "delay_model": f"fixed {delay:g} s per request (each part of <=55 s), whatever its length",
            "reps": reps, "rows": rows}


def upload_size(seconds: float) -> Dict[str, Any]:
    """Request body bytes per second of audio, per encoding, relative to linear16."""
    fake = start_fake(0.0)
    signals = {"speech_like": speech_like(seconds, seed=7)}
    spoken = espeak_utterance()
    if spoken is not None:
        signals["espeak_ng"] = spoken
    rows = []
    try:
        for encoding in ENCODINGS:
            engine = _engine(fake.endpoint, encoding=encoding)
            for name, pcm in signals.items():
                duration = len(pcm) / (2 * RATE)
                engine.transcribe(AudioData(pcm, RATE, 2))
                body = fake.requests[-1].body
                content = base64.b64decode(json.loads(body)["audio"]["content"])
                rows.append({"signal": name, "encoding": encoding, "seconds": duration,
                             "body_bytes_per_s": len(body) / duration,
                             "audio_bytes_per_s": len(content) / duration,
                             "kbit_per_s": len(content) * 8 / duration / 1000})
            engine.shutdown()
    finally:
        fake.stop()
    for row in rows:
        ref = next(r for r in rows if r["signal"] == row["signal"] and r["encoding"] == "linear16")
        row["vs_linear16"] = row["body_bytes_per_s"] / ref["body_bytes_per_s"]
    return {"signals": {"speech_like": DESCRIPTION,
                        **({"espeak_ng": "espeak-ng en-us synthesized paragraph, resampled to 16 kHz"}
                           if spoken is not None else {})},
            "espeak_ng_available": spoken is not None,
            "measured": "HTTP request body (JSON with base64 audio) as received by the fake; "
                        "headers (~250 B/request) not counted",
            "rows": rows}


def connections(count: int, delay: float) -> Dict[str, Any]:
    """TCP connections the fake accepted for ``count`` sequential, then concurrent, transcriptions."""
    fake = start_fake(delay)
    audio = AudioData(speech_like(2, seed=9), RATE, 2)
    result: Dict[str, Any] = {"transcriptions": count, "delay_s": delay}
    try:
        engine = _engine(fake.endpoint)
        before = fake.connections
        for _ in range(count):
            engine.transcribe(audio)
        result["sequential"] = fake.connections - before
        result["pool_size"] = engine.recognizer.client.pool_size
        engine.shutdown()

        engine = _engine(fake.endpoint)
        barrier = threading.Barrier(count)

        def one(_: int) -> None:
            barrier.wait()
            engine.transcribe(audio)

        before = fake.connections
        started = time.perf_counter()
        with ThreadPoolExecutor(count) as pool:
            list(pool.map(one, range(count)))
        result["concurrent_wall_s"] = time.perf_counter() - started
        result["concurrent"] = fake.connections - before
        engine.shutdown()
    finally:
        fake.stop()
    result["per_100_sequential"] = result["sequential"] * 100 / count
    result["per_100_concurrent"] = result["concurrent"] * 100 / count
    return result
