"""An utterance recognised while it is spoken: uploaded as its chunks arrive, so the transcript
follows the end of speech by little more than Google's own recognition time, and re-sent whole
through the Recognizer's ordinary path whenever the upload cannot be used. Independent of OVOS."""
from __future__ import annotations

from typing import Iterable, Iterator, List, Optional

from . import audio as audio_mod
from .errors import APIError, DeadlineError, ModelNotSupportedError, UnavailableError
from .log import ModuleLog
from .recognizer import CHUNK_SECONDS, LANGS_PER_REQUEST, Recognizer
from .wire import Transcript, b64encode, body_parts

LOG = ModuleLog(__name__)

# Statuses with which an HTTP server refuses a chunked body it will not take: 411 (Length
# Required) whatever its body says; the others when the body is not a google.rpc.Status.
LENGTH_REQUIRED = 411
REFUSALS = frozenset({400, 405, LENGTH_REQUIRED, 413, 415, 501, 505})


class _Abandon(Exception):
    """Raised inside the body generator to give up on the progressive request; ``expected``
    when nothing failed (the audio or the language only fit the ordinary path)."""

    def __init__(self, why: str, expected: bool = False) -> None:
        super().__init__(why)
        self.expected = expected


class StreamedUpload:
    """One utterance of 16-bit PCM arriving in chunks, recognised through its Recognizer.

    ``run(chunks)`` opens the speech:recognize POST at once with a chunked body (the JSON up to
    the audio, then the base64 of each chunk as it comes, the closing JSON when ``chunks``
    ends) when it can: LINEAR16 at a rate Google takes, at most one request's candidate
    languages, an endpoint that has not refused a chunked body. Every chunk is also kept: when
    the upload cannot be used (too long, the language changed, a refused chunked body, Google
    unavailable, the model refused), the buffered audio is recognised the ordinary way, so no
    utterance is lost. ``lang`` may change until ``chunks`` ends; ``abandon()``, from any
    thread, gives up: nothing more is sent and the transcript is empty.
    """

    def __init__(self, recognizer: Recognizer, lang: Optional[str] = None, *,
                 sample_rate: int = 16000, sample_width: int = 2, progressive: bool = True) -> None:
        self.recognizer = recognizer
        self.lang = lang
        self.sample_rate = sample_rate
        self.sample_width = sample_width
        # The progressive_upload setting can turn it off; so can the caller (a fallback STT).
        self.progressive = progressive and recognizer.settings.progressive_upload
        self.buffer = bytearray()
        self.abandoned = False

    def abandon(self) -> None:
        self.abandoned = True

    def run(self, chunks: Iterable[bytes]) -> Transcript:
        """The transcript of the whole utterance ("" for no speech). Raises GoogleSTTError."""
        recognizer, chunks = self.recognizer, iter(chunks)
        languages = recognizer.languages_for(self.lang)
        if not self._can_upload(languages):
            recognizer.warm()                 # DNS, TCP and TLS while the user speaks
            return self._ordinary(chunks)
        model = recognizer.model_for(languages[0])
        try:
            return recognizer.recognize_streaming(self._body(chunks, languages, model),
                                                  languages[0], languages[1:])
        except _Abandon as why:
            if self.abandoned:
                return Transcript()
            _fell_back(str(why), expected=why.expected)
        except ModelNotSupportedError:
            if not model:
                raise
            recognizer.refuse_model(model, languages[0])
        except APIError as exc:
            if exc.status == LENGTH_REQUIRED or (exc.status in REFUSALS and not exc.reason):
                recognizer.refuse_chunked(f"the endpoint refused a chunked upload (HTTP {exc.status})")
            elif not isinstance(exc, UnavailableError) or isinstance(exc, DeadlineError):
                # the key, quota or request: the same again would fail; past the deadline, a
                # second upload would double the wait the caller was promised
                raise
            else:
                _fell_back(f"the progressive upload failed: {exc}")
        return self._ordinary(chunks)

    def _can_upload(self, languages: List[str]) -> bool:
        recognizer = self.recognizer
        return (self.progressive and not recognizer.chunked_refused
                and len(languages) <= LANGS_PER_REQUEST
                and recognizer.settings.encoding == "linear16"
                and self.sample_width == 2 and 8000 <= self.sample_rate <= 48000)

    def _body(self, chunks: Iterator[bytes], languages: List[str],
              model: Optional[str]) -> Iterator[bytes]:
        body = self.recognizer.body(b"", languages[0], sample_rate=self.sample_rate, model=model,
                                    alternatives=languages[1:])
        head, tail = body_parts(body)
        yield head
        sent = 0
        limit = int(CHUNK_SECONDS * self.sample_rate) * self.sample_width
        for chunk in chunks:
            if self.abandoned:
                raise _Abandon("abandoned")
            self.buffer.extend(chunk)
            if len(self.buffer) > limit:
                raise _Abandon("the utterance passed Google's one-minute limit", expected=True)
            usable = (len(self.buffer) - sent) // 3 * 3       # base64 stays valid across chunks
            if usable:
                yield b64encode(self.buffer[sent:sent + usable])
                sent += usable
        if self.abandoned or not self.buffer:
            raise _Abandon("abandoned" if self.abandoned else "no audio", expected=True)
        if self.recognizer.languages_for(self.lang) != languages:
            raise _Abandon("the language changed at the end of the utterance", expected=True)
        yield b64encode(self.buffer[sent:]) + tail

    def _ordinary(self, chunks: Iterator[bytes]) -> Transcript:
        """The buffered audio (and whatever is still to come) the one-shot way."""
        for chunk in chunks:
            self.buffer.extend(chunk)
        if self.abandoned or not self.buffer:
            return Transcript()
        pcm = audio_mod.from_raw(bytes(self.buffer), self.sample_rate, self.sample_width)
        return self.recognizer.recognize(audio_mod.to_linear16(pcm), self.lang)


def _fell_back(why: str, expected: bool = False) -> None:
    """A failed upload is a WARNING; an utterance that only fits the ordinary path, INFO."""
    (LOG.info if expected else LOG.warning)("%s; transcribing the buffered audio instead", why)
