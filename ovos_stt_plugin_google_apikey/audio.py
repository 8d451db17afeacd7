"""The PCM type and pure conversions (rate, width, channels, splitting at quiet points) into
what Google accepts (LINEAR16 mono). A leaf: bytes of unknown origin are decoding's."""
from __future__ import annotations

import io
import warnings
import wave
from array import array
from dataclasses import dataclass
from typing import List

with warnings.catch_warnings():
    # Deprecated in 3.11-3.12, removed in 3.13 where the audioop-lts backport provides it.
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

from .errors import AudioError

GOOGLE_MIN_RATE = 8000
GOOGLE_MAX_RATE = 48000
FALLBACK_RATE = 16000       # Google's optimum, used when the native rate is out of range
RAW_RATE = 16000            # raw bytes without a header are taken as OVOS's listener format
RAW_WIDTH = 2
SANE_RATES = (1000, 768000)  # anything outside is a corrupt header, not audio
WIDTHS = (1, 2, 3, 4)
MAX_CHANNELS = 32


@dataclass(frozen=True)
class PCM:
    """Little-endian signed PCM, channels interleaved."""

    data: bytes
    sample_rate: int
    sample_width: int
    channels: int = 1

    def __post_init__(self) -> None:
        if not SANE_RATES[0] <= self.sample_rate <= SANE_RATES[1]:
            raise AudioError(f"sample rate {self.sample_rate} Hz is not a plausible audio rate "
                             f"({SANE_RATES[0]}-{SANE_RATES[1]} Hz)")
        if self.sample_width not in WIDTHS:
            raise AudioError(f"sample width of {self.sample_width} bytes is not supported "
                             "(8, 16, 24 or 32-bit PCM)")
        if not 1 <= self.channels <= MAX_CHANNELS:
            raise AudioError(f"{self.channels} channels is not supported (1-{MAX_CHANNELS})")
        if len(self.data) % self.frame_size:
            # A partial trailing frame is a truncated upload; drop it rather than refuse.
            object.__setattr__(self, "data", self.data[:len(self.data) - len(self.data) % self.frame_size])

    @property
    def frame_size(self) -> int:
        return self.sample_width * self.channels

    @property
    def duration(self) -> float:
        return len(self.data) / (self.frame_size * self.sample_rate)


def from_raw(data: bytes, sample_rate: int = RAW_RATE, sample_width: int = RAW_WIDTH,
             channels: int = 1) -> PCM:
    """Raw little-endian signed PCM with the given format."""
    return PCM(bytes(data), sample_rate, sample_width, channels)


def to_linear16(pcm: PCM) -> PCM:
    """Mono 16-bit PCM at the native rate when Google accepts it (8-48 kHz), else 16 kHz."""
    data = pcm.data
    if pcm.sample_width != 2:
        data = audioop.lin2lin(data, pcm.sample_width, 2)
    if pcm.channels > 1:
        data = mix_to_mono(data, pcm.channels)
    mono = PCM(data, pcm.sample_rate, 2, 1)
    if not GOOGLE_MIN_RATE <= mono.sample_rate <= GOOGLE_MAX_RATE:
        return resample(mono, FALLBACK_RATE)
    return mono


def resample(pcm: PCM, rate: int) -> PCM:
    """16-bit mono PCM at another rate (audioop's linear interpolation with a light filter)."""
    if pcm.sample_rate == rate:
        return pcm
    data, _ = audioop.ratecv(pcm.data, 2, 1, pcm.sample_rate, rate, None)
    return PCM(data, rate, 2, 1)


def split(pcm: PCM, max_seconds: float, search_seconds: float = 5.0,
          window_seconds: float = 0.05) -> List[PCM]:
    """Cut 16-bit mono PCM into pieces of at most ``max_seconds``.

    Each cut falls in the quietest ``window_seconds`` of the last ``search_seconds`` before
    the limit, so a cut lands between words rather than inside one.
    """
    frame = pcm.frame_size
    limit = int(max_seconds * pcm.sample_rate) * frame
    window = max(frame, int(window_seconds * pcm.sample_rate) * frame)
    search = int(search_seconds * pcm.sample_rate) * frame
    pieces, start = [], 0
    while len(pcm.data) - start > limit:
        lo, hi = start + limit - search, start + limit - window
        best, cut = None, start + limit
        for pos in range(lo, hi + 1, window):
            level = audioop.rms(pcm.data[pos:pos + window], 2)
            if best is None or level < best:
                best, cut = level, pos + window // 2 // frame * frame
        pieces.append(PCM(pcm.data[start:cut], pcm.sample_rate, 2, 1))
        start = cut
    pieces.append(PCM(pcm.data[start:], pcm.sample_rate, 2, 1))
    return pieces


def mix_to_mono(data: bytes, channels: int) -> bytes:
    """16-bit interleaved frames as their mono mix."""
    if channels == 1:
        return data
    if channels == 2:
        return audioop.tomono(data, 2, 0.5, 0.5)
    samples = array("h", data)
    mono = b""
    for channel in range(channels):
        part = audioop.mul(samples[channel::channels].tobytes(), 2, 1.0 / channels)
        mono = audioop.add(mono, part, 2) if mono else part
    return mono


def to_wav(pcm: PCM) -> bytes:
    """A WAV file of the PCM (for callers that need one, e.g. the HTTP client contract)."""
    buffer = io.BytesIO()
    frames = audioop.bias(pcm.data, 1, 128) if pcm.sample_width == 1 else pcm.data
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(pcm.channels)
        wav.setsampwidth(pcm.sample_width)
        wav.setframerate(pcm.sample_rate)
        wav.writeframes(frames)
    return buffer.getvalue()
