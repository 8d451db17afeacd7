"""Why a body is not audio we read, as a refusal kind, and the words for it: the server's (a
request, its query parameters, curl) and a command line's (a file, its options)."""
from __future__ import annotations

import os
import shlex

from .errors import UnsupportedAudioError

ACCEPTED = ("WAV (PCM, float, A-law, mu-law), FLAC, Ogg Opus/Vorbis, AIFF, MP3 (libsndfile 1.1 "
            "or later) or raw 16-bit PCM with ?sample_rate=16000&sample_width=2")
INSTALL_HINT = "pip install 'ovos-stt-plugin-google-apikey[flac]'"
CONVERT = "ffmpeg -i {source} -ar 16000 -ac 1 {target}"

# The kinds (UnsupportedAudioError.kind).
CONTAINER = "container"            # audio in a container not decoded here: convert it
NOT_AUDIO = "not-audio"            # an image, a document, an archive, a program
TEXT = "text"
NOT_PCM = "not-pcm"                # no file header we know, and not whole samples either
LABELLED = "labelled"              # the Content-Type names something that is not audio
NEEDS_DECODER = "needs-decoder"    # FLAC, Ogg, MP3... without the [flac] extra (or too old)
FORM_BODY = "form"                 # curl's form encoding: `-d` mangled the file, or no file


def refusal(kind: str, found: str, extension: str = "") -> UnsupportedAudioError:
    """The server's refusal of ``kind`` for what was ``found`` ("an M4A (MP4 audio) file");
    ``extension`` is the one a file of it usually has, for the conversion example."""
    if kind == CONTAINER:
        example = CONVERT.format(source=f"memo{extension or '.m4a'}", target="memo.wav")
        message = (f"the body is {found}, which this server does not decode: convert it to WAV "
                   f"(`{example}`) and send that")
    elif kind == LABELLED:
        message = f"a {found} body is not audio; send {ACCEPTED}"
    elif kind == NOT_PCM:
        message = f"{found}, so this is not raw PCM; send {ACCEPTED}"
    elif kind == NEEDS_DECODER:
        message = f"{found} needs the optional decoder: {INSTALL_HINT} (or send WAV or raw PCM)"
    else:
        found = found if kind != NOT_AUDIO or found.endswith("audio") else f"{found}, not audio"
        found = "text, not audio" if kind == TEXT else found
        message = f"the body is {found}; send {ACCEPTED}"
    return UnsupportedAudioError(message, kind=kind, found=found)


def mangled_by_curl_d(detail: str) -> UnsupportedAudioError:
    """A form-encoded body that starts as a file but is broken: `curl -d @file` reads a file a
    line at a time and keeps each line only up to its first CR, LF or NUL byte."""
    return UnsupportedAudioError(
        "the body looks like a file mangled by `curl -d`, which drops a file's CR, LF and NUL "
        "bytes: send it with `curl --data-binary @file.wav` or `curl -F audio=@file.wav` "
        f"({detail})", kind=FORM_BODY, found="a form")


def form_without_a_file() -> UnsupportedAudioError:
    return UnsupportedAudioError(
        "the body came form-encoded (curl -d or --data-binary) and is not an audio file: send a "
        "file with `curl --data-binary @file.wav` or `curl -F audio=@file.wav`; raw 16-bit PCM "
        "with ?sample_rate=16000&sample_width=2; an MP3 without an ID3 tag with "
        "-H 'Content-Type: audio/mpeg'", kind=FORM_BODY, found="a form")


def explain(exc: UnsupportedAudioError, path: str,
            options: str = "--sample-rate and --sample-width") -> str:
    """The refusal worded for someone who named the file ``path`` on a command line, where
    ``options`` set the raw PCM format."""
    give = (f"give a WAV, FLAC, Ogg, AIFF or MP3 file, or raw 16-bit mono PCM (any other file "
            f"is read as that, at 16 kHz; {options} change it)")
    if exc.kind == CONTAINER:
        target = shlex.quote(os.path.splitext(path)[0] + ".wav")
        convert = CONVERT.format(source=shlex.quote(path), target=target)
        return f"{path} is {exc.found}, which is not read here: convert it with `{convert}`"
    if exc.kind == NEEDS_DECODER:
        return f"{path} is {exc.found}, which needs the optional decoder: {INSTALL_HINT}"
    if exc.kind == LABELLED:
        return f"{path} is not audio ({exc.found}, by its name); {give}"
    if exc.kind == NOT_PCM:
        return f"{path} is no audio file this reads, and as raw PCM {exc.found}; {give}"
    if exc.kind in (TEXT, NOT_AUDIO):
        return f"{path} is {exc.found}; {give}"
    return f"{path}: {exc}"
