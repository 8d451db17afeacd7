"""What a body's first bytes say it is, when that is something we do not read as audio: media
containers phones and browsers write, and files that are not audio at all. Pure data."""
from __future__ import annotations

from typing import Optional, Tuple

from .refusals import CONTAINER, NOT_AUDIO

# Containers phones, browsers and cameras write, which libsndfile does not read.
CONTAINERS = {b"\x1a\x45\xdf\xa3": ("WebM/Matroska audio", ".webm"), b"#!AMR": ("AMR audio", ".amr"),
              b"0&\xb2u\x8ef\xcf\x11": ("a WMA/ASF file", ".wma"), b".ra\xfd": ("RealAudio", ".ra"),
              b".RMF": ("RealMedia", ".rm")}
# An ISO media file (`....ftyp<brand>`) by its brand; other brands are MP4.
FTYP_BRANDS = {"M4A": ("an M4A (MP4 audio) file", ".m4a"), "M4B": ("an M4B audiobook", ".m4b"),
               "M4P": ("an M4P (MP4 audio) file", ".m4a"), "3gp": ("a 3GP recording", ".3gp"),
               "3g2": ("a 3G2 recording", ".3g2"), "qt ": ("a QuickTime movie", ".mov")}
FTYP_IMAGES = ("heic", "heix", "mif1", "msf1", "avif", "avis")
PROGRAM = "a program (Windows/DOS executable)"
# Files that are not audio at all.
FOREIGN = {b"\x89PNG": "a PNG image", b"%PDF": "a PDF document", b"PK\x03\x04": "a zip archive",
           b"GIF8": "a GIF image", b"\xff\xd8\xff": "a JPEG image", b"\x1f\x8b": "gzip data",
           b"\x7fELF": "a program (ELF executable)", b"\xfe\xed\xfa\xce": "a program (Mach-O)",
           b"\xfe\xed\xfa\xcf": "a program (Mach-O)", b"\xce\xfa\xed\xfe": "a program (Mach-O)",
           b"\xcf\xfa\xed\xfe": "a program (Mach-O)", b"\xca\xfe\xba\xbe": "a program (Mach-O or Java)",
           b"MZ": PROGRAM, b"7z\xbc\xaf\x27\x1c": "a 7-Zip archive", b"\xfd7zXZ\x00": "xz data",
           b"\x28\xb5\x2f\xfd": "zstd data", b"BZh": "bzip2 data",
           b"MThd": "a MIDI file (notes, not sound)", b"SQLite format 3\x00": "an SQLite database",
           b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1": "an Office document", b"\x00asm": "WebAssembly"}


def identify(data: bytes, raw_declared: bool) -> Optional[Tuple[str, str, str]]:
    """(refusal kind, what it is, its usual extension) for a body that is a container we do
    not decode or not audio at all; None for anything else (audio, or perhaps raw PCM).

    ``raw_declared``: the request says raw PCM, so a signature of 2 or 3 bytes (which the first
    samples can be) does not count; a longer or checked one still does."""
    if data[:4] == b"RIFF" and len(data) >= 12 and data[8:12] != b"WAVE":
        form = data[8:12].decode("latin-1")
        if form == "AVI ":
            return CONTAINER, "an AVI video", ".avi"
        return NOT_AUDIO, f"a RIFF {form!r} file, not WAV audio" if form.isalnum() else \
            "a RIFF file, not WAV audio", ""
    if data[4:8] == b"ftyp":
        brand = data[8:12].decode("latin-1")
        if brand in FTYP_IMAGES:
            return NOT_AUDIO, "a HEIF/AVIF image", ""
        found, extension = next((named for prefix, named in FTYP_BRANDS.items()
                                 if brand.startswith(prefix)), ("an MP4 file", ".mp4"))
        return CONTAINER, found, extension
    named = next((named for magic, named in CONTAINERS.items() if data.startswith(magic)), None)
    if named is not None:
        return CONTAINER, named[0], named[1]
    if not raw_declared and _adts(data):
        return CONTAINER, "raw AAC audio (ADTS)", ".aac"
    foreign = next((name for magic, name in FOREIGN.items()
                    if data.startswith(magic) and (len(magic) >= 4 or not raw_declared)), None)
    if foreign is None and _windows_program(data):
        foreign = PROGRAM
    return (NOT_AUDIO, foreign, "") if foreign else None


def _adts(data: bytes) -> bool:
    """Raw AAC: an ADTS frame header (sync, layer 0) and another where its length points."""
    def frame_length(at: int) -> int:
        head = data[at:at + 7]
        if len(head) < 7 or head[0] != 0xFF or head[1] & 0xF6 != 0xF0:
            return 0
        return (head[3] & 3) << 11 | head[4] << 3 | head[5] >> 5
    length = frame_length(0)
    return length >= 7 and frame_length(length) >= 7


def _windows_program(data: bytes) -> bool:
    """A PE executable: "MZ" and, where its DOS header points, "PE\\0\\0"."""
    if data[:2] != b"MZ" or len(data) < 64:
        return False
    offset = int.from_bytes(data[60:64], "little")
    return data[offset:offset + 4] == b"PE\x00\x00"
