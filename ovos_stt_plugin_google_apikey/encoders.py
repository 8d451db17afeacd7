"""Upload encodings: LINEAR16 (no dependency), FLAC and Ogg Opus (soundfile, the [flac] extra)."""
from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

from . import audio as audio_mod
from .errors import AudioError, ConfigError

OPUS_RATES = (8000, 12000, 16000, 24000, 48000)   # Google's OGG_OPUS rule, and libopus's
INSTALL_HINT = "pip install 'ovos-stt-plugin-google-apikey[flac]'"


@dataclass(frozen=True)
class Encoded:
    """Audio bytes as sent, with the RecognitionConfig values that must match them."""

    data: bytes
    encoding: str          # Google's enum name
    sample_rate: int


def check_available(encoding: str) -> None:
    """Raise ConfigError at start-up when the encoding's optional dependency is missing."""
    if encoding != "linear16":
        _soundfile(encoding)


def encode(pcm: audio_mod.PCM, encoding: str) -> Encoded:
    """Encode 16-bit mono PCM (from audio.to_linear16) for Google."""
    if encoding == "linear16":
        return Encoded(pcm.data, "LINEAR16", pcm.sample_rate)
    soundfile = _soundfile(encoding)
    if encoding == "ogg_opus" and pcm.sample_rate not in OPUS_RATES:
        pcm = audio_mod.resample(pcm, 16000 if pcm.sample_rate < 24000 else 48000)
    fmt, subtype, name = ("FLAC", "PCM_16", "FLAC") if encoding == "flac" else ("OGG", "OPUS", "OGG_OPUS")
    buffer = io.BytesIO()
    try:
        with soundfile.SoundFile(buffer, "w", samplerate=pcm.sample_rate, channels=1,
                                 format=fmt, subtype=subtype) as out:
            out.buffer_write(pcm.data, dtype="int16")
    except (RuntimeError, ValueError) as exc:
        raise AudioError(f"cannot encode the audio as {name}: {exc}") from exc
    return Encoded(buffer.getvalue(), name, pcm.sample_rate)


def _soundfile(encoding: str) -> Any:
    try:
        import soundfile
    except ImportError as exc:
        raise ConfigError(f"'encoding' {encoding!r} needs the optional encoder: {INSTALL_HINT}") from exc
    except OSError as exc:   # 32-bit ARM wheels ship no libsndfile
        raise ConfigError(f"'encoding' {encoding!r} needs libsndfile: {exc} "
                          "(on Raspberry Pi OS 32-bit: sudo apt install libsndfile1)") from exc
    return soundfile
