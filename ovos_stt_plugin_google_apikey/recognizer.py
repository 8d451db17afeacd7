"""From 16-bit mono PCM to a Transcript: one request, long audio in parallel chunks, or a
fan-out over candidate languages. Independent of OVOS."""
from __future__ import annotations

import contextlib
import threading
import time
import weakref
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import replace
from typing import Callable, Dict, List, Optional, Sequence, Set

from . import audio as audio_mod
from . import encoders, errors
from .client import SpeechClient
from .errors import (APIError, AudioError, ClosedError, ConfigError, GoogleSTTError,
                     ModelNotSupportedError)
from .log import ModuleLog
from .settings import Settings
from .wire import (MAX_REQUEST_BYTES, Alternative, Transcript, build_recognize_body,
                   parse_response)

LOG = ModuleLog(__name__)

CHUNK_SECONDS = 55.0           # safely under Google's 60 s synchronous limit
LANGS_PER_REQUEST = 4          # languageCode plus at most 3 alternativeLanguageCodes
MAX_CANDIDATES = 32            # 8 parallel requests at most for one detection
BODY_OVERHEAD = 4096           # JSON around the base64 audio, generously

Progress = Callable[[int, int], None]


class Recognizer:
    """Thread-safe; owns one pooled client and two bounded worker pools: one for the parts of
    long recordings, one for language candidates, so a detection or a short utterance never
    queues behind the parts of a long recording."""

    def __init__(self, settings: Settings, client: Optional[SpeechClient] = None) -> None:
        encoders.check_available(settings.encoding)
        self.settings = settings
        self.client = client or SpeechClient(settings, pool_size=max(16, 2 * settings.max_workers))
        self._parts = ThreadPoolExecutor(settings.max_workers, thread_name_prefix="google-stt-part")
        self._part_workers = settings.max_workers
        self._candidates = ThreadPoolExecutor(settings.max_workers, thread_name_prefix="google-stt-lang")
        self._no_model: Set[str] = set()        # languages the configured model refused
        self._lock = threading.Lock()
        self._submitted: "weakref.WeakSet[Future[Transcript]]" = weakref.WeakSet()

    def ensure_part_workers(self, workers: int) -> None:
        """At least ``workers`` threads for the parts of long audio (a server sizes this to its
        own capacity, so many clients' long recordings do not queue behind 4 threads)."""
        if workers > self._part_workers:
            old, self._parts = self._parts, ThreadPoolExecutor(workers, thread_name_prefix="google-stt-part")
            self._part_workers = workers
            old.shutdown(wait=False)         # its running parts finish; new ones go to the new pool

    def close(self) -> None:
        pools = (self._parts, self._candidates)
        for pool in pools:
            pool.shutdown(wait=False, cancel_futures=True)
        # A future the shutdown cancelled does not wake a wait() on it by itself: notify them,
        # so a call waiting for its parts raises ClosedError now (_gather).
        for future in list(self._submitted):
            if future.cancelled():
                self._submitted.discard(future)
                with contextlib.suppress(RuntimeError):    # already notified (a second close)
                    future.set_running_or_notify_cancel()
        for pool in pools:                   # running requests end by their deadline
            pool.shutdown(wait=True)
        self.client.close()

    def recognize(self, pcm: audio_mod.PCM, languages: Sequence[str],
                  progress: Optional[Progress] = None) -> Transcript:
        """Transcribe 16-bit mono PCM; ``languages`` are Google tags, the first preferred.

        Audio over CHUNK_SECONDS is cut at quiet points and its parts recognised in parallel;
        any failed part fails the whole (no silently shortened text). Raises GoogleSTTError.
        """
        if not pcm.data:
            raise AudioError("the audio is empty")
        if pcm.duration <= CHUNK_SECONDS:
            transcript = self.recognize_languages(pcm, languages)
            if progress:
                progress(1, 1)
            return transcript
        pieces = audio_mod.split(pcm, CHUNK_SECONDS)
        detection = None
        if len(languages) > 1:            # decide the language once, on the first part
            detection = self.recognize_languages(pieces[0], languages)
            languages = [detection.language] if detection.language else languages[:1]
        transcript = self._recognize_pieces(pieces, languages[0], progress)
        if detection is None:
            return transcript
        return replace(transcript, billed_seconds=_billed([detection, transcript]))

    def recognize_languages(self, pcm: audio_mod.PCM, languages: Sequence[str]) -> Transcript:
        """One piece in whichever candidate language Google hears best (``.language``).

        One ``timeout`` from this call bounds it all: waiting for a worker, every request and
        retry; only the time an upload keeps moving is added, as for any request (a group that
        starts after the deadline fails at once). Raises DeadlineError past it.
        """
        deadline = time.monotonic() + self.settings.timeout
        if len(languages) > MAX_CANDIDATES:
            raise ConfigError(f"at most {MAX_CANDIDATES} candidate languages; got {len(languages)}")
        groups = [list(languages[i:i + LANGS_PER_REQUEST])
                  for i in range(0, len(languages), LANGS_PER_REQUEST)]
        if len(groups) == 1:
            return self.recognize_piece(pcm, groups[0][0], groups[0][1:], deadline)
        futures = [self._submit(self._candidates, self.recognize_piece, pcm, g[0], g[1:], deadline)
                   for g in groups]
        transcripts = _gather(futures)
        return replace(max(transcripts, key=_score), billed_seconds=_billed(transcripts))

    def recognize_piece(self, pcm: audio_mod.PCM, language: str,
                        alternatives: Sequence[str] = (), deadline: Optional[float] = None) -> Transcript:
        """One speech:recognize request (plus one without the model if Google refuses it),
        within ``deadline`` (time.monotonic()), by default ``timeout`` from now."""
        if deadline is None:
            deadline = time.monotonic() + self.settings.timeout
        encoded = encoders.encode(pcm, self.settings.encoding)
        model = None if language in self._no_model else self.settings.model
        body = build_recognize_body(self.settings, encoded.data, language,
                                    encoding=encoded.encoding, sample_rate=encoded.sample_rate,
                                    model=model, alternative_languages=alternatives)
        size = len(body["audio"]["content"]) + BODY_OVERHEAD
        if size > MAX_REQUEST_BYTES:
            raise AudioError(f"the request would be about {size} bytes; Google accepts at most "
                             f"{MAX_REQUEST_BYTES}")
        try:
            answer = self.client.recognize(body, deadline)
        except ModelNotSupportedError:
            if not model:
                raise
            LOG.warning("Google's model %s does not support %s; using Google's default model "
                        "for %s from now on", model, language, language)
            with self._lock:
                self._no_model.add(language)
            body["config"].pop("model")
            # A timeout of its own: the refused request's upload may have used this one's
            # (once per language: the refusal is remembered).
            answer = self.client.recognize(body, time.monotonic() + self.settings.timeout)
        transcript = parse_response(answer)
        return Transcript(transcript.alternatives, _match(transcript.language, language, alternatives),
                          transcript.billed_seconds)

    def _recognize_pieces(self, pieces: List[audio_mod.PCM], language: str,
                          progress: Optional[Progress]) -> Transcript:
        done = 0
        done_lock = threading.Lock()
        # Waiting for a part worker counts against the deadline: the parts run in waves of the
        # pool's size, wave k within (k + 1) timeouts of now; a part kept waiting longer by
        # other calls' parts fails (DeadlineError) instead of running unbounded.
        started, workers = time.monotonic(), self._part_workers

        def one(index: int, piece: audio_mod.PCM) -> Transcript:
            nonlocal done
            deadline = started + (index // workers + 1) * self.settings.timeout
            result = self.recognize_piece(piece, language, (), deadline)
            if progress:
                with done_lock:
                    done += 1
                    progress(done, len(pieces))
            return result

        futures = [self._submit(self._parts, one, index, piece) for index, piece in enumerate(pieces)]
        parts = _gather(futures, pieces)
        texts = [p.text for p in parts if p.text]
        known = [p.alternatives[0].confidence for p in parts if p.alternatives]
        confidence = (sum(known) / len(known)) if known and None not in known else None  # type: ignore[operator]
        if not texts:
            return Transcript((), language, _billed(parts))
        return Transcript((Alternative(" ".join(texts), confidence),), language, _billed(parts))

    def _submit(self, pool: ThreadPoolExecutor, fn: Callable[..., Transcript],
                *args: object) -> "Future[Transcript]":
        try:
            future = pool.submit(fn, *args)
        except RuntimeError as exc:          # the pool was shut down
            raise ClosedError(errors.SHUT_DOWN) from exc
        self._submitted.add(future)
        return future

    @property
    def model_refused_for(self) -> Set[str]:
        return set(self._no_model)


def _gather(futures: List["Future[Transcript]"],
            pieces: Optional[List[audio_mod.PCM]] = None) -> List[Transcript]:
    """Results in order; on the first failure cancel what has not started and raise. Each
    request ends by its own deadline, so this wait does too."""
    wait(futures, return_when=FIRST_EXCEPTION)
    for index, future in enumerate(futures):
        if future.done() and not future.cancelled() and future.exception() is not None:
            for other in futures:
                other.cancel()
            exc = future.exception()
            if pieces is None or not isinstance(exc, GoogleSTTError):
                raise exc  # type: ignore[misc]
            start = sum(p.duration for p in pieces[:index])
            raise _with_prefix(exc, f"part {index + 1} of {len(pieces)} "
                                    f"({start:.0f}-{start + pieces[index].duration:.0f} s) failed: ")
    if any(future.cancelled() for future in futures):      # only close() cancels before this
        for other in futures:
            other.cancel()
        raise ClosedError(errors.SHUT_DOWN)
    return [f.result() for f in futures]


def _with_prefix(exc: GoogleSTTError, prefix: str) -> GoogleSTTError:
    if isinstance(exc, APIError):
        new: GoogleSTTError = type(exc)(prefix + str(exc), status=exc.status, reason=exc.reason,
                                        google_message=exc.google_message, retry_after=exc.retry_after)
    else:
        new = type(exc)(prefix + str(exc))
    new.__cause__ = exc
    return new


def _billed(transcripts: Sequence[Transcript]) -> Optional[float]:
    """What Google billed for all of them; None when Google said for none."""
    known = [t.billed_seconds for t in transcripts if t.billed_seconds is not None]
    return sum(known) if known else None  # type: ignore[arg-type]


def _score(transcript: Transcript) -> float:
    if not transcript.alternatives:
        return -1.0
    confidence = transcript.alternatives[0].confidence
    return 0.5 if confidence is None else confidence


def _match(reported: Optional[str], language: str, alternatives: Sequence[str]) -> Optional[str]:
    """Google echoes the detected tag lower-cased ("pt-pt"); give back the tag we sent."""
    candidates: Dict[str, str] = {tag.lower(): tag for tag in [language, *alternatives]}
    if reported is None:
        return language
    return candidates.get(reported.lower(), reported)
