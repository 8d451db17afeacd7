"""Bytes of unknown origin → audio, within a duration budget: which format a body is, the rule
for raw PCM, and decoding that stops as soon as the budget is passed.

The rule (docs/server.md, "What counts as audio"): a body that starts with a file header (WAV,
FLAC, Ogg, AIFF, MP3's ID3 tag; an MPEG frame header when labelled audio/mpeg or followed by a
Xing/Info tag) is that file. A container we do not decode (MP4/M4A/3GP, WebM, AMR, raw AAC) or a
file that is not audio (images, archives, programs: signatures.py) is refused, and so is a body
labelled audio/mp4, audio/aac, audio/webm or video/*. Anything else is raw PCM (little-endian,
signed, mono) only when the request says so or could: a ``sample_rate`` / ``sample_width``
parameter, or a Content-Type that is absent, ``audio/*`` or ``application/octet-stream``. Raw
PCM must hold whole samples and not be text.
"""
from __future__ import annotations

import io
import re
import warnings
from typing import Any, Optional

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)   # audioop-lts provides it on 3.13
    import audioop

from . import audio as audio_mod
from . import wavfile
from .errors import AudioError, AudioTooLongError, UnsupportedAudioError
from .refusals import (
    ACCEPTED,
    CONTAINER,
    LABELLED,
    NEEDS_DECODER,
    NOT_PCM,
    TEXT,
    form_without_a_file,
    mangled_by_curl_d,
    refusal,
)
from .signatures import identify

FORM = "application/x-www-form-urlencoded"
MPEG_TYPES = ("audio/mpeg", "audio/mp3", "audio/mpeg3", "audio/x-mpeg")
# Content-Types of compressed formats not decoded here: such a body is never raw PCM.
NOT_PCM_TYPES = ("audio/mp4", "audio/m4a", "audio/x-m4a", "audio/aac", "audio/aacp", "audio/x-aac",
                 "audio/webm", "audio/3gpp", "audio/3gpp2", "audio/amr", "audio/x-ms-wma")
SOUNDFILE_KINDS = {b"fLaC": "FLAC", b"OggS": "Ogg", b"FORM": "AIFF", b"ID3": "MP3",
                   # what recorders and sox also write; libsndfile reads them
                   b"RF64": "RF64", b"riff.\x91\xcf\x11": "Wave64", b".snd": "AU", b"caff": "CAF",
                   b"NIST_1A": "NIST SPHERE"}
MAX_VALUES_PER_SECOND = 48000 * 2    # the budget's samples per second: 48 kHz stereo
BLOCK_FRAMES = 32768          # frames decoded at a time: ~1 MB even at 32 channels
TEXT_PROBE = 1024             # bytes looked at to tell text from PCM


def decode(data: bytes, *, content_type: Optional[str] = None, sample_rate: Optional[int] = None,
           sample_width: Optional[int] = None, max_seconds: Optional[float] = None) -> audio_mod.PCM:
    """The audio in ``data`` by the rule above, refused past ``max_seconds`` (None: no limit).

    Raises UnsupportedAudioError when it is not audio we read (the message says what to send,
    ``kind`` and ``found`` say why), AudioTooLongError past the budget, AudioError for audio
    that is broken.
    """
    media = (content_type or "").split(";")[0].strip().lower()
    raw_declared = sample_rate is not None or sample_width is not None
    if data[:4] == b"RIFF" and media == FORM and (len(data) < 12 or data[8:12] != b"WAVE"):
        raise mangled_by_curl_d("its RIFF header is cut short")     # what `curl -d` leaves
    identified = identify(data, raw_declared)
    if identified is not None:
        raise refusal(*identified)
    kind = sniff(data, mpeg_labelled=media in MPEG_TYPES)
    if kind is not None:
        try:
            if kind == "WAV":
                return from_wav(data, max_seconds, strict=media == FORM)
            return from_soundfile(data, kind, max_seconds)
        except (AudioTooLongError, UnsupportedAudioError):   # a missing decoder is the cause
            raise
        except AudioError as exc:
            if media == FORM:            # what `curl -d @file.wav` does to a file
                raise mangled_by_curl_d(str(exc)) from exc
            raise
    if media in NOT_PCM_TYPES or media.startswith("video/"):
        raise refusal(CONTAINER, f"{media} audio", ".m4a")
    if not raw_declared:
        if media == FORM:
            raise form_without_a_file()
        if media and not (media.startswith("audio/") or media == "application/octet-stream"):
            raise refusal(LABELLED, media)
    return from_raw(data, audio_mod.RAW_RATE if sample_rate is None else sample_rate,
                    audio_mod.RAW_WIDTH if sample_width is None else sample_width, max_seconds)


def sniff(data: bytes, mpeg_labelled: bool = False) -> Optional[str]:
    """"WAV", "MP3" or another SOUNDFILE_KINDS name by the file's first bytes; None for
    anything else.

    An MP3 without an ID3 tag starts with a frame header, which raw PCM can too (a loud first
    sample, and mpg123 "decodes" such PCM into silence): that counts only when labelled MPEG or
    followed by the Xing/Info tag encoders write (libsndfile and LAME do)."""
    if data[:4] == b"RIFF":
        return "WAV"
    kind = next((name for magic, name in SOUNDFILE_KINDS.items() if data.startswith(magic)), None)
    if kind is None and _mpeg_frame_header(data[:4]) and (mpeg_labelled or _vbr_tag(data)):
        kind = "MP3"
    return kind


def decodes_quickly(data: bytes, limit: int) -> bool:
    """Whether decoding ``data`` costs about a copy of ``limit`` bytes or less: raw PCM and
    16- to 32-bit PCM WAVs up to ``limit`` (a copy), 8-bit, A-law and mu-law WAVs up to a
    quarter of it (one C call writing twice their size), WAVs refused from their header.
    Never a float WAV (a loop in Python without numpy: 184 ms for 1 MiB) or a compressed file."""
    if len(data) > limit:
        return False
    kind = sniff(data, True)
    if kind != "WAV":
        return kind is None
    try:
        wav = wavfile.parse(data)
    except AudioError:
        return True
    if wav.fmt == wavfile.IEEE_FLOAT:
        return False
    return wav.fmt == wavfile.PCM and wav.sample_width > 1 or len(data) <= limit // 4


def from_wav(data: bytes, max_seconds: Optional[float] = None, strict: bool = False) -> audio_mod.PCM:
    """A WAV file, its duration checked from the header before a sample is copied.

    ``strict``: a RIFF size that disagrees with the length is an error (bytes were lost)."""
    declared = int.from_bytes(data[4:8], "little")
    if strict and declared not in wavfile.STREAMED_SIZES and declared != len(data) - 8:
        raise AudioError(f"the WAV header says {declared + 8} bytes but {len(data)} arrived")
    wav = wavfile.parse(data)
    check_duration(wav.duration, max_seconds)
    frames, width = wavfile.samples(wav, data)
    return audio_mod.PCM(frames, wav.sample_rate, width, wav.channels)


def from_raw(data: bytes, sample_rate: int, sample_width: int,
             max_seconds: Optional[float] = None) -> audio_mod.PCM:
    """Raw PCM from an untrusted source: whole samples, not text, within the budget."""
    if sample_width in audio_mod.WIDTHS and len(data) % sample_width:
        raise refusal(NOT_PCM, f"{len(data)} bytes is not a whole number of "
                               f"{8 * sample_width}-bit samples")
    if data and _is_text(data[:TEXT_PROBE]):
        raise refusal(TEXT, "text")
    pcm = audio_mod.from_raw(b"", sample_rate, sample_width)     # validates rate and width first
    check_duration(len(data) / (pcm.frame_size * pcm.sample_rate), max_seconds)
    return audio_mod.from_raw(data, sample_rate, sample_width)


def from_soundfile(data: bytes, kind: str = "FLAC/Ogg", max_seconds: Optional[float] = None) -> audio_mod.PCM:
    """FLAC, Ogg, AIFF or MP3 through libsndfile, decoded a block at a time, mixed to mono (and
    brought to 16 kHz above 48 kHz) as it goes, so memory follows the budget, not the
    compression ratio. The declared length (FLAC's STREAMINFO, Ogg's last page) is checked
    before the first block."""
    soundfile = _soundfile(kind)
    try:
        with _forward_only(soundfile)(io.BytesIO(data)) as sound:
            rate, channels, declared = int(sound.samplerate), int(sound.channels), int(sound.frames)
            audio_mod.PCM(b"", rate, 2, channels)                   # a plausible format, or AudioError
            # The work of decoding follows samples, not seconds: a budget of max_seconds at
            # 48 kHz stereo also bounds a file of 655 kHz and 8 channels.
            limit = None if max_seconds is None else int(min(max_seconds * rate,
                                                             max_seconds * MAX_VALUES_PER_SECOND / channels))
            if limit is not None and 0 < declared < 2 ** 62:        # 2**63-1: length unknown
                check_duration(declared / rate, max_seconds)
                _check_values(declared, channels, max_seconds)
            # Above Google's rates, resampled block by block: 120 s at 384 kHz would be 92 MB.
            target = rate if rate <= audio_mod.GOOGLE_MAX_RATE else audio_mod.FALLBACK_RATE
            decoded, total, state = bytearray(), 0, None
            while True:
                block = sound.read(BLOCK_FRAMES, dtype="int16", always_2d=True)
                if not len(block):
                    break
                total += len(block)
                if limit is not None and total > limit:
                    _check_values(total, channels, max_seconds)
                    raise AudioTooLongError(f"the audio lasts more than {max_seconds:g} s, "
                                            f"the limit")
                mono = audio_mod.mix_to_mono(block.tobytes(), channels)
                if target != rate:
                    mono, state = audioop.ratecv(mono, 2, 1, rate, target, state)
                decoded += mono
    except AudioError:
        raise
    except (RuntimeError, ValueError, TypeError, OverflowError, MemoryError) as exc:
        # LibsndfileError is a RuntimeError; its text names our in-memory file object by address
        why = re.sub(r"^Error opening <[^>]*>: ", "", str(exc))
        raise AudioError(f"cannot decode the {kind} audio: {why}") from exc
    return audio_mod.PCM(bytes(decoded), target, 2, 1)


def _check_values(frames: int, channels: int, max_seconds: Optional[float]) -> None:
    if max_seconds is not None and frames * channels > max_seconds * MAX_VALUES_PER_SECOND:
        raise AudioTooLongError(f"the audio holds more samples than {max_seconds:g} s of 48 kHz "
                                f"stereo, the limit ({channels} channels)")


def check_duration(seconds: float, max_seconds: Optional[float]) -> None:
    """Raise AudioTooLongError when ``seconds`` is over ``max_seconds`` (None: no limit)."""
    if max_seconds is not None and seconds > max_seconds:
        raise AudioTooLongError(f"the audio lasts {seconds:.1f} s, over the limit of {max_seconds:g} s")


def _soundfile(kind: str) -> Any:
    try:
        import soundfile
    except (ImportError, OSError) as exc:       # OSError: a wheel without libsndfile (32-bit ARM)
        raise refusal(NEEDS_DECODER, f"{kind} audio") from exc
    if kind == "MP3" and "MP3" not in soundfile.available_formats():
        version = soundfile.__libsndfile_version__
        raise UnsupportedAudioError(f"MP3 needs libsndfile 1.1 or later (this one is {version}); "
                                    f"send {ACCEPTED}", kind=NEEDS_DECODER,
                                    found=f"MP3 audio (libsndfile 1.1 or later; this is {version})")
    return soundfile


def _forward_only(soundfile: Any) -> Any:
    """SoundFile that reads straight on. soundfile seeks after each read of a seekable file, which
    fails at the end of a FLAC whose length is unknown (a streamed one); and its reads stop at the
    declared length, where this decoder wants to see what follows (the budget guard judges)."""
    class ForwardSoundFile(soundfile.SoundFile):
        def seekable(self) -> bool:
            return False
    return ForwardSoundFile


def _mpeg_frame_header(head: bytes) -> bool:
    """An MPEG audio frame header: sync, a real version and layer, bitrate and rate indexes."""
    if len(head) < 4 or head[0] != 0xFF or head[1] & 0xE0 != 0xE0:
        return False
    version, layer = head[1] >> 3 & 3, head[1] >> 1 & 3
    bitrate, rate = head[2] >> 4, head[2] >> 2 & 3
    return version != 1 and layer != 0 and bitrate not in (0, 15) and rate != 3


def _vbr_tag(data: bytes) -> bool:
    """The Xing/Info tag encoders put in an MP3's first frame (at 13, 21 or 36 bytes, after the
    side information): with a frame header before it, no raw PCM holds it."""
    return any(data[offset:offset + 4] in (b"Xing", b"Info") for offset in (13, 21, 36))


def _is_text(head: bytes) -> bool:
    """Text: UTF-16 with its byte order mark, UTF-8 with no control characters but tab and
    newlines, or bytes nearly all printable ASCII (Windows-1252, Latin-1). PCM never is: its
    quiet samples hold NUL and 0xFF bytes, its loud ones any byte."""
    if head[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return True
    printable = sum(1 for byte in head if 32 <= byte < 127 or byte in b"\t\n\r")
    if len(head) >= 64 and printable >= 0.95 * len(head):
        return True
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 3:               # not just a character cut at the probe's end
            return False
        text = head[:exc.start].decode("utf-8")
    return all(char.isprintable() or char in "\t\n\r" for char in text)


def from_audio(audio: Any) -> audio_mod.PCM:
    """Accept OPM's or SpeechRecognition's AudioData, a PCM, WAV bytes, or raw 16 kHz PCM.

    Raises AudioError when the input is none of these.
    """
    if isinstance(audio, audio_mod.PCM):
        return audio
    if isinstance(audio, (bytes, bytearray, memoryview)):
        return decode(bytes(audio))
    frames = getattr(audio, "frame_data", None)
    if isinstance(frames, (bytes, bytearray)):
        # AudioData (either class) holds mono, signed, little-endian frames.
        try:
            rate, width = int(audio.sample_rate), int(audio.sample_width)
        except (AttributeError, TypeError, ValueError, OverflowError) as exc:  # None, "abc", NaN, inf
            raise AudioError(f"the audio's sample_rate/sample_width are not whole numbers: {exc}") from exc
        return audio_mod.PCM(bytes(frames), rate, width)
    raise AudioError(f"cannot read audio from {type(audio).__name__}: expected AudioData, "
                     "WAV bytes or raw 16 kHz 16-bit mono PCM")
