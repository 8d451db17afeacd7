"""Audio made in the tests: tones stand in for speech, zeros for silence."""
from __future__ import annotations

import io
import math
import struct
import wave
from array import array


def tone(seconds: float = 1.0, rate: int = 16000, width: int = 2, channels: int = 1,
         freq: float = 440.0, amplitude: float = 0.5) -> bytes:
    """Little-endian signed PCM of a sine, the same on every channel."""
    frames = int(seconds * rate)
    full = (1 << (8 * width - 1)) - 1
    out = bytearray()
    for i in range(frames):
        value = int(full * amplitude * math.sin(2 * math.pi * freq * i / rate))
        sample = value.to_bytes(width, "little", signed=True)
        out += sample * channels
    return bytes(out)


def silence(seconds: float = 1.0, rate: int = 16000, width: int = 2, channels: int = 1) -> bytes:
    return bytes(int(seconds * rate) * width * channels)


def wav(pcm: bytes, rate: int = 16000, width: int = 2, channels: int = 1) -> bytes:
    """A WAV file; 8-bit samples are stored unsigned as the format requires."""
    if width == 1:
        pcm = bytes((b + 128) & 0xFF for b in pcm)
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(pcm)
    return buffer.getvalue()


def rms16(pcm: bytes) -> float:
    samples = array("h", pcm)
    return math.sqrt(sum(s * s for s in samples) / max(1, len(samples)))


def peak_frequency16(pcm: bytes, rate: int) -> float:
    """Zero-crossing estimate of a pure tone's frequency."""
    samples = array("h", pcm)
    crossings = sum(1 for a, b in zip(samples, samples[1:]) if a < 0 <= b)
    return crossings * rate / max(1, len(samples))


def le16(values) -> bytes:
    return struct.pack(f"<{len(values)}h", *values)
