"""Speech-like test audio: shaped noise and pulse trains with syllables and pauses (numpy), or espeak-ng."""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Optional

import numpy as np

RATE = 16000
SYLLABLES_PER_SECOND = 4.5        # conversational English runs at 4-5 syllables a second
NOISE_FLOOR_DBFS = -58.0          # a quiet room, not digital silence (FLAC would get pauses for free)
# (F1, F2, F3) in Hz: rough vowel formants of an adult speaker
VOWELS = ((730, 1090, 2440), (270, 2290, 3010), (300, 870, 2240), (530, 1840, 2480),
          (660, 1720, 2410), (570, 840, 2410), (440, 1020, 2240), (490, 1350, 1690))
DESCRIPTION = ("numpy speech-like signal: a jittered glottal pulse train (f0 95-210 Hz) plus breath noise, "
               "shaped per syllable by three formant resonances (vowel-like F1/F2/F3), "
               f"~{SYLLABLES_PER_SECOND:g} syllables/s with attack/decay envelopes, fricative noise bursts, "
               f"200-700 ms pauses between phrases, and a {NOISE_FLOOR_DBFS:g} dBFS room-noise floor; "
               "not a pure tone")


def speech_like(seconds: float, rate: int = RATE, seed: int = 1) -> bytes:
    """Little-endian int16 mono PCM of ``seconds`` of speech-like sound (deterministic per seed)."""
    rng = np.random.default_rng(seed)
    total = int(seconds * rate)
    out = np.zeros(total)
    pos = int(rng.uniform(0.05, 0.2) * rate)
    while pos < total:
        for _ in range(int(rng.integers(3, 12))):           # a phrase of syllables
            length = int(rng.uniform(0.12, 0.32) * rate)
            if pos + length > total:
                break
            out[pos:pos + length] += _syllable(length, rate, rng)
            pos += length + int(rng.uniform(0.0, 0.04) * rate)
        pos += int(rng.uniform(0.2, 0.7) * rate)              # pause between phrases
    out *= 10 ** (-3 / 20) / max(1e-9, np.max(np.abs(out)))  # peaks at -3 dBFS
    out += rng.normal(0, 10 ** (NOISE_FLOOR_DBFS / 20), total)
    return (np.clip(out, -1, 1) * 32767).astype("<i2").tobytes()


def _syllable(length: int, rate: int, rng: np.random.Generator) -> np.ndarray:
    f0 = rng.uniform(95, 210)
    period = rate / f0
    pulses = np.zeros(length)
    t = 0.0
    while t < length:
        pulses[int(t)] = 1.0
        t += period * (1 + rng.normal(0, 0.01)) * (1 + 0.05 * np.sin(2 * np.pi * t / length))
    excitation = pulses + rng.normal(0, 0.02, length)
    spectrum = np.fft.rfft(excitation)
    freqs = np.fft.rfftfreq(length, 1 / rate)
    formants = np.array(VOWELS[int(rng.integers(len(VOWELS)))]) * rng.uniform(0.9, 1.15)
    shape = sum(gain / (1 + ((freqs - f) / bw) ** 2)
                for f, bw, gain in zip(formants, (80, 110, 160), (1.0, 0.5, 0.25)))
    shape *= 1 / (1 + freqs / 3000)                            # spectral tilt of the glottal source
    voiced = np.fft.irfft(spectrum * shape, length)
    envelope = np.minimum(1, np.minimum(np.arange(length), np.arange(length)[::-1]) / (0.03 * rate))
    envelope *= rng.uniform(0.4, 1.0)                          # stressed and unstressed syllables
    sound = voiced * envelope
    if rng.random() < 0.4:                                     # a fricative onset (s, f, sh)
        burst = int(min(length // 3, rng.uniform(0.04, 0.1) * rate))
        hiss = np.fft.rfft(rng.normal(0, 1, burst))
        bfreqs = np.fft.rfftfreq(burst, 1 / rate)
        hiss = np.fft.irfft(hiss * (bfreqs > rng.uniform(2500, 4500)), burst)
        sound[:burst] += hiss * np.hanning(burst) * np.std(voiced) * 0.6
    return sound


def espeak_utterance(rate: int = RATE) -> Optional[bytes]:
    """int16 PCM at ``rate`` of a synthesized English paragraph, or None without espeak-ng."""
    binary = shutil.which("espeak-ng")
    if binary is None:
        return None
    text = ("The quick brown fox jumps over the lazy dog. Please set a timer for ten minutes, "
            "then turn off the kitchen lights and tell me tomorrow's weather in Lisbon. "
            "OpenVoiceOS sends what you said to the speech service and reads the answer back.")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "utterance.wav"
        try:
            subprocess.run([binary, "-v", "en-us", "-w", str(path), text], check=True,
                           capture_output=True, timeout=60)
        except (OSError, subprocess.SubprocessError):
            return None
        data = path.read_bytes()
    from ovos_stt_plugin_google_apikey import audio as audio_mod
    from ovos_stt_plugin_google_apikey import decoding
    pcm = audio_mod.to_linear16(decoding.decode(data))
    return audio_mod.resample(pcm, rate).data
