"""From 16-bit mono PCM to a Transcript: the one path every way in takes (languages and
``auto``, the refused-model fallback, long audio in parallel parts, language candidates,
uploads streamed as they are spoken, joining, what it cost). Independent of OVOS."""
from __future__ import annotations

import contextlib
import threading
import time
import weakref
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import replace
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Set, Tuple

from . import audio as audio_mod
from . import encoders, errors
from .client import SpeechClient
from .errors import (
    APIError,
    AudioError,
    ClosedError,
    ConfigError,
    DeadlineError,
    GoogleSTTError,
    ModelNotSupportedError,
)
from .languages import to_google
from .log import ModuleLog
from .settings import Settings
from .wire import (
    LINEAR16,
    MAX_REQUEST_BYTES,
    Alternative,
    Transcript,
    billed_seconds,
    build_recognize_body,
    join_texts,
    parse_response,
    total_billed,
)

LOG = ModuleLog(__name__)

AUTO = "auto"                  # the language meaning "choose from auto_languages"
CHUNK_SECONDS = 55.0           # safely under Google's 60 s synchronous limit
LANGS_PER_REQUEST = 4          # languageCode plus at most 3 alternativeLanguageCodes
MAX_CANDIDATES = 32            # 8 parallel requests at most for one detection
BODY_OVERHEAD = 4096           # JSON around the base64 audio, generously

Progress = Callable[[int, int], None]
# Told of every attempt: Google's 200 JSON or the APIError, the seconds it took, whether a retry.
AttemptObserver = Callable[[Any, float, bool], None]


class Recognizer:
    """Thread-safe; owns one pooled client and two bounded worker pools: one for the parts of
    long recordings, one for language candidates, so a detection or a short utterance never
    queues behind the parts of a long recording.

    ``default_language`` is the language when neither the call nor ``settings.lang`` names one
    (the OVOS plugin passes OVOS's own). Raises ConfigError when ``lang`` is ``auto`` with
    nothing to choose from.
    """

    def __init__(self, settings: Settings, client: Optional[SpeechClient] = None, *,
                 default_language: Optional[str] = None) -> None:
        encoders.check_available(settings.encoding)
        self.settings = settings
        self.default_language = default_language
        self._auto = _auto_candidates(settings, default_language)
        self.client = client or SpeechClient(settings, pool_size=max(16, 2 * settings.max_workers))
        self._parts = ThreadPoolExecutor(settings.max_workers, thread_name_prefix="google-stt-part")
        self._part_workers = settings.max_workers
        self._candidates = ThreadPoolExecutor(settings.max_workers, thread_name_prefix="google-stt-lang")
        self._no_model: Set[str] = set()        # languages the configured model refused
        self._chunked_refused = False           # the endpoint refused a chunked upload
        self._billed = 0.0
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

    # -- the public engine API beside recognition (the server and metrics use these)

    @property
    def billed_seconds(self) -> float:
        """What Google billed (its totalBilledTime) for every answer since this was made."""
        with self._lock:
            return self._billed

    def reserve(self, connections: int) -> None:
        """Allow at least ``connections`` requests to Google at once (the pool blocks when full)
        and as many part workers, so a server's clients' long recordings do not queue behind
        ``max_workers`` threads. Call before recognising: connections already open are closed."""
        self.client.ensure_pool_size(connections)
        self.ensure_part_workers(connections)

    def observe_attempts(self, observer: Optional[AttemptObserver]) -> None:
        """Tell ``observer`` of every attempt from now on (one observer; None for none)."""
        self.client.on_attempt = observer

    @property
    def model_refused_for(self) -> Set[str]:
        return set(self._no_model)

    # -- languages: the one resolution

    def languages_for(self, lang: Optional[str] = None) -> List[str]:
        """Google tags to try, the preferred first: ``lang``, else ``settings.lang``, else
        ``default_language``; when that is ``auto``, the ``auto_languages`` (or, with none, the
        configured or default language). Raises ConfigError."""
        if lang is not None and not isinstance(lang, str):
            raise ConfigError(f"the language must be a tag such as en-US; got {lang!r:.100}")
        chosen = lang or self.settings.lang or self.default_language
        if not chosen:
            raise ConfigError("no language: set 'lang' (a tag such as en-US) or pass one")
        if chosen.strip().lower() != AUTO:
            return [to_google(chosen)]
        if not self._auto:
            raise ConfigError(f"the language is '{AUTO}' but there is nothing to choose from: set "
                              "'auto_languages', e.g. [\"en-US\", \"pt-PT\"]")
        return list(self._auto)

    def model_for(self, language: str) -> Optional[str]:
        """The model to ask for ``language``: none once Google refused the configured one."""
        return None if language in self._no_model else self.settings.model

    # -- recognition

    def recognize(self, pcm: audio_mod.PCM, lang: Optional[str] = None,
                  progress: Optional[Progress] = None) -> Transcript:
        """Transcribe 16-bit mono PCM in ``lang`` (any tag OVOS or Google uses, or ``auto``;
        None for the configured language).

        Audio over CHUNK_SECONDS is cut at quiet points and its parts recognised in parallel;
        any failed part fails the whole (no silently shortened text). Raises GoogleSTTError.
        """
        if not pcm.data:
            raise AudioError("the audio is empty")
        languages = self.languages_for(lang)
        if pcm.duration <= CHUNK_SECONDS:
            transcript = self.recognize_languages(pcm, languages)
            if progress:
                progress(1, 1)
            return self._logged(transcript)
        pieces = audio_mod.split(pcm, CHUNK_SECONDS)
        detection = None
        if len(languages) > 1:            # decide the language once, on the first part
            detection = self.recognize_languages(pieces[0], languages)
            languages = [detection.language] if detection.language else languages[:1]
        transcript = self._recognize_pieces(pieces, languages[0], progress)
        if detection is not None:
            transcript = replace(transcript, billed_seconds=total_billed([detection, transcript]))
        return self._logged(transcript)

    def detect_language(self, pcm: audio_mod.PCM,
                        candidates: Optional[Iterable[str]] = None) -> Tuple[str, float]:
        """The candidate Google hears best in the first part of ``pcm``, as (the tag as given,
        the transcript's confidence: 0.5 when Google gives none, 0.0 for no speech).

        Candidates: ``candidates``, else ``auto_languages``. Raises ConfigError, GoogleSTTError.
        """
        if isinstance(candidates, str):         # one tag, not its letters
            candidates = [candidates]
        try:
            given = list(candidates or self.settings.auto_languages)
        except TypeError:
            given = [candidates]                # type: ignore[list-item]
        if any(not isinstance(tag, str) or not tag for tag in given):
            raise ConfigError(f"candidate languages must be tags such as en-US; got "
                              f"{candidates!r:.200}")
        given = list(dict.fromkeys(given))
        if not given:
            raise ConfigError("no candidate languages: pass valid_langs or set 'auto_languages'")
        if len(given) == 1:
            return given[0], 1.0
        by_google = {to_google(tag): tag for tag in given}
        piece = audio_mod.split(pcm, CHUNK_SECONDS)[0]
        transcript = self._logged(self.recognize_languages(piece, list(by_google)))
        if not transcript.alternatives:
            return given[0], 0.0
        confidence = transcript.alternatives[0].confidence
        return (by_google.get(transcript.language or "", given[0]),
                0.5 if confidence is None else confidence)

    def recognize_languages(self, pcm: audio_mod.PCM, languages: Sequence[str]) -> Transcript:
        """One piece in whichever candidate language (Google tags) Google hears best
        (``.language``).

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
        return replace(max(transcripts, key=_score), billed_seconds=total_billed(transcripts))

    def recognize_piece(self, pcm: audio_mod.PCM, language: str,
                        alternatives: Sequence[str] = (), deadline: Optional[float] = None) -> Transcript:
        """One speech:recognize request (plus one without the model if Google refuses it),
        within ``deadline`` (time.monotonic()), by default ``timeout`` from now."""
        if deadline is None:
            deadline = time.monotonic() + self.settings.timeout
        encoded = encoders.encode(pcm, self.settings.encoding)
        model = self.model_for(language)
        body = self.body(encoded.data, language, encoding=encoded.encoding,
                         sample_rate=encoded.sample_rate, model=model, alternatives=alternatives)
        size = len(body["audio"]["content"]) + BODY_OVERHEAD
        if size > MAX_REQUEST_BYTES:
            raise AudioError(f"the request would be about {size} bytes; Google accepts at most "
                             f"{MAX_REQUEST_BYTES}")
        try:
            answer = self._counted(self.client.recognize(body, deadline))
        except ModelNotSupportedError:
            if not model:
                raise
            self.refuse_model(model, language)
            body["config"].pop("model")
            # A timeout of its own: the refused request's upload may have used this one's
            # (once per language: the refusal is remembered).
            answer = self._counted(self.client.recognize(body, time.monotonic() + self.settings.timeout))
        return _transcript(answer, language, alternatives)

    def body(self, content: bytes, language: str, *, encoding: str = LINEAR16,
             sample_rate: int = 16000, model: Optional[str] = None,
             alternatives: Sequence[str] = ()) -> Dict[str, Any]:
        """The recognize body for ``content`` with these settings."""
        return build_recognize_body(content, language, encoding=encoding, sample_rate=sample_rate,
                                    model=model, alternative_languages=alternatives,
                                    **self.settings.body_options())

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
        last_wave = started + -(-len(pieces) // workers) * self.settings.timeout
        parts = _gather(futures, pieces, last_wave)
        texts = [p.text for p in parts if p.text]
        known = [p.alternatives[0].confidence for p in parts if p.alternatives]
        given = [c for c in known if c is not None]
        confidence = sum(given) / len(given) if given and len(given) == len(known) else None
        if not texts:
            return Transcript((), language, total_billed(parts))
        return Transcript((Alternative(join_texts(texts, language), confidence),), language,
                          total_billed(parts))

    def _submit(self, pool: ThreadPoolExecutor, fn: Callable[..., Transcript],
                *args: object) -> "Future[Transcript]":
        try:
            future = pool.submit(fn, *args)
        except RuntimeError as exc:          # the pool was shut down
            raise ClosedError(errors.SHUT_DOWN) from exc
        self._submitted.add(future)
        return future

    def recognize_streaming(self, parts: Iterable[bytes], language: str,
                            alternatives: Sequence[str] = ()) -> Transcript:
        """One speech:recognize request whose body is still being made (``parts``: the JSON of
        ``body`` split around its audio, see StreamedUpload). Raises what
        SpeechClient.recognize_streaming raises (an exception from ``parts`` unchanged)."""
        answer = self._counted(self.client.recognize_streaming(parts))
        return self._logged(_transcript(answer, language, alternatives))

    def warm(self) -> None:
        """Open a connection to Google (DNS, TCP, TLS) ahead of a recognition; never raises."""
        self.client.warm()

    @property
    def chunked_refused(self) -> bool:
        """Whether the endpoint refused a chunked (streamed) upload: upload whole from now on."""
        return self._chunked_refused

    def refuse_chunked(self, why: str) -> None:
        """Remember that the endpoint refuses chunked uploads."""
        with self._lock:
            self._chunked_refused = True
        LOG.warning("%s; uploading after the user stops speaking from now on", why)

    def refuse_model(self, model: str, language: str) -> None:
        """Remember that Google refused ``model`` for ``language``: ask for none from now on."""
        LOG.warning("Google's model %s does not support %s; using Google's default model "
                    "for %s from now on", model, language, language)
        with self._lock:
            self._no_model.add(language)

    def _counted(self, answer: Dict[str, Any]) -> Dict[str, Any]:
        """Google's 200 answer, its billed time added to the total."""
        seconds = billed_seconds(answer)
        if seconds:
            with self._lock:
                self._billed += seconds
        return answer

    def _logged(self, transcript: Transcript) -> Transcript:
        if transcript.billed_seconds is None:
            LOG.debug("Google did not say what it billed for this recognition (%g s in all)",
                      self.billed_seconds)
        else:
            LOG.debug("Google billed %g s for this recognition (%g s in all)",
                      transcript.billed_seconds, self.billed_seconds)
        return transcript


def _auto_candidates(settings: Settings, default_language: Optional[str]) -> List[str]:
    """The Google tags ``auto`` chooses from; ConfigError when the configured language is
    ``auto`` and there is nothing to choose from."""
    if settings.auto_languages:
        candidates = list(dict.fromkeys(to_google(tag) for tag in settings.auto_languages))
        if len(candidates) > MAX_CANDIDATES:
            raise ConfigError(f"'auto_languages' may name at most {MAX_CANDIDATES} languages; "
                              f"got {len(candidates)}")
        return candidates
    fallback = next((tag for tag in (settings.lang, default_language)
                     if tag and tag.strip().lower() != AUTO), None)
    if fallback is not None:
        return [to_google(fallback)]
    if (settings.lang or "").strip().lower() == AUTO:
        raise ConfigError(f"'lang' is '{AUTO}' but 'auto_languages' is not set: set "
                          "'auto_languages' to the languages to choose from, e.g. "
                          "[\"en-US\", \"pt-PT\"], or 'lang' to one language")
    return []


def _transcript(answer: Dict[str, Any], language: str, alternatives: Sequence[str]) -> Transcript:
    transcript = parse_response(answer)
    return Transcript(transcript.alternatives, _match(transcript.language, language, alternatives),
                      transcript.billed_seconds)


def _gather(futures: List["Future[Transcript]"], pieces: Optional[List[audio_mod.PCM]] = None,
            queue_deadline: Optional[float] = None) -> List[Transcript]:
    """Results in order; on the first failure cancel what has not started and raise. Each
    request ends by its own deadline, so this wait does too; a part still waiting for a worker
    at ``queue_deadline`` (time.monotonic()) is cancelled with a DeadlineError."""
    if queue_deadline is not None:
        _, pending = wait(futures, max(0.0, queue_deadline - time.monotonic()), FIRST_EXCEPTION)
        failed = any(f.done() and not f.cancelled() and f.exception() is not None for f in futures)
        queued = [f for f in pending if not failed and f.cancel()]   # cancel() takes only unstarted
        if queued:
            for other in futures:
                other.cancel()
            raise DeadlineError(f"{len(queued)} of {len(futures)} parts were still waiting for a "
                                "worker at the deadline: too many long recordings at once for "
                                "'max_workers'")
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
