"""WAV files as recorders write them: PCM (plain or WAVE_FORMAT_EXTENSIBLE), float, A-law, mu-law.

Read by hand rather than with ``wave``: Python 3.11's ``wave`` refuses WAVE_FORMAT_EXTENSIBLE
(what sox writes for 24-bit or multichannel audio) and float, and walks any number of chunks.
Here the walk is bounded and the duration is known from the header before a sample is copied.
"""
from __future__ import annotations

import sys
import warnings
from array import array
from dataclasses import dataclass
from typing import Tuple

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)   # audioop-lts provides it on 3.13
    import audioop

from .errors import AudioError, UnsupportedAudioError

PCM, IEEE_FLOAT, ALAW, MULAW, EXTENSIBLE = 0x0001, 0x0003, 0x0006, 0x0007, 0xFFFE
# The 14 bytes every KSDATAFORMAT_SUBTYPE_* GUID of the WAVE formats ends with.
GUID_TAIL = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
MAX_CHUNKS = 64          # recorders write a handful (fmt, fact, LIST, bext, JUNK, data)
STREAMED_SIZES = (0, 0xFFFFFFFF)   # what a writer that cannot seek back leaves in a size field
SEND_INSTEAD = "send 8/16/24/32-bit PCM, float, A-law or mu-law WAV, or FLAC"


@dataclass(frozen=True)
class Wav:
    """A parsed header and where its samples are."""

    fmt: int             # PCM, IEEE_FLOAT, ALAW or MULAW (an EXTENSIBLE file's sub-format)
    sample_rate: int
    sample_width: int    # bytes per sample as stored
    channels: int
    start: int           # offset of the samples in the file
    size: int            # their length in bytes, a whole number of frames

    @property
    def duration(self) -> float:
        return self.size / (self.sample_width * self.channels * self.sample_rate)


def parse(data: bytes) -> Wav:
    """The header of a WAV file. Raises AudioError (UnsupportedAudioError for a codec we do not read)."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise AudioError("not a readable WAV file: no RIFF/WAVE header")
    pos, header = 12, None
    for _ in range(MAX_CHUNKS):
        if pos + 8 > len(data):
            raise AudioError("not a readable WAV file: it has no 'data' chunk")
        name, size = data[pos:pos + 4], int.from_bytes(data[pos + 4:pos + 8], "little")
        start = pos + 8
        if name == b"fmt ":
            header = data[start:start + size]
        elif name == b"data":
            if header is None:
                raise AudioError("not a readable WAV file: its 'data' chunk comes before 'fmt '")
            if size in STREAMED_SIZES or start + size > len(data):
                size = len(data) - start            # a streamed or truncated file: what is there
            return _wav(header, start, size)
        pos = start + size + (size & 1)             # chunks are padded to an even length
    raise AudioError(f"not a readable WAV file: more than {MAX_CHUNKS} chunks before the audio")


def _wav(header: bytes, start: int, size: int) -> Wav:
    if len(header) < 16:
        raise AudioError("not a readable WAV file: its 'fmt ' chunk is too short")
    fmt, channels = int.from_bytes(header[0:2], "little"), int.from_bytes(header[2:4], "little")
    rate = int.from_bytes(header[4:8], "little")
    align, bits = int.from_bytes(header[12:14], "little"), int.from_bytes(header[14:16], "little")
    if fmt == EXTENSIBLE:
        if len(header) < 40 or header[26:40] != GUID_TAIL:
            raise UnsupportedAudioError(f"this WAVE_FORMAT_EXTENSIBLE file holds a codec this server "
                                        f"does not read; {SEND_INSTEAD}")
        fmt = int.from_bytes(header[24:26], "little")
    width = (bits + 7) // 8
    if fmt not in (PCM, IEEE_FLOAT, ALAW, MULAW):
        raise UnsupportedAudioError(f"WAV format 0x{fmt:04x} (compressed) is not read here; {SEND_INSTEAD}")
    if fmt == IEEE_FLOAT and bits not in (32, 64) or fmt in (ALAW, MULAW) and bits != 8:
        raise AudioError(f"not a readable WAV file: {bits}-bit samples in format 0x{fmt:04x}")
    if fmt == PCM and channels and align % channels == 0 and width < align // channels <= 4:
        width = align // channels                   # e.g. 20 valid bits in a 32-bit container
    if not 1 <= channels <= 32 or not 1000 <= rate <= 768000 or fmt == PCM and not 1 <= width <= 4:
        raise AudioError(f"not a readable WAV file: {channels} channels, {rate} Hz, {bits}-bit samples")
    frame = width * channels
    return Wav(fmt, rate, width, channels, start, size - size % frame)


def samples(wav: Wav, data: bytes) -> Tuple[bytes, int]:
    """(frames, width): signed little-endian PCM of the file (8-bit made signed; float, A-law
    and mu-law made 16-bit)."""
    frames = data[wav.start:wav.start + wav.size]
    if wav.fmt == PCM:
        return (audioop.bias(frames, 1, -128), 1) if wav.sample_width == 1 else (frames, wav.sample_width)
    if wav.fmt == ALAW:
        return audioop.alaw2lin(frames, 2), 2
    if wav.fmt == MULAW:
        return audioop.ulaw2lin(frames, 2), 2
    return float_to_int16(frames, wav.sample_width), 2


def float_to_int16(frames: bytes, width: int) -> bytes:
    """-1.0..1.0 float samples (4 or 8 bytes, little-endian) as 16-bit; NaN is 0, overs clip."""
    try:
        import numpy
    except ImportError:                  # numpy is optional: the loop below is the slow path
        pass
    else:
        values = numpy.nan_to_num(numpy.frombuffer(frames, "<f4" if width == 4 else "<f8"))
        return (numpy.clip(values, -1.0, 1.0) * 32767).astype("<i2").tobytes()
    values = array("f" if width == 4 else "d", frames)
    if sys.byteorder == "big":
        values.byteswap()
    ints = array("h", (int(max(-1.0, min(1.0, v)) * 32767) if v == v else 0 for v in values))
    if sys.byteorder == "big":
        ints.byteswap()
    return ints.tobytes()

