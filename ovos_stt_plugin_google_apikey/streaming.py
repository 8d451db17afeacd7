"""The streaming variant: uploads while the user speaks, so the transcript follows the end of
speech by little more than Google's own recognition time.

OVOS's listener calls ``stream_start`` at the wake word, ``stream_data`` for each microphone
chunk and ``transcribe()`` (through ``stream_stop``) when the user stops speaking. At
``stream_start`` a worker opens the ``speech:recognize`` POST with a chunked body: the JSON up
to the audio content, then the base64 of each chunk as it arrives; the closing JSON goes out
at ``stream_stop`` and only the answer is awaited. Whatever goes wrong, the buffered audio is
transcribed by the ordinary path, so no utterance is lost.

As the listener's ``fallback_module`` it is fed the same way, but its transcript is asked for
only when the primary STT failed: it then keeps the audio and sends it in one request when asked.
"""
from __future__ import annotations

import base64
import threading
from queue import Queue
from typing import Any, Dict, Iterator, List, Optional, Set, Tuple

from ovos_plugin_manager.templates.stt import StreamingSTT, StreamThread

from . import audio as audio_mod
from .errors import APIError, UnavailableError
from .log import ModuleLog
from .plugin import PLUGIN_ID, GoogleAPIKeySTT, as_tuples
from .recognizer import CHUNK_SECONDS
from .wire import Transcript, body_parts, build_recognize_body, parse_response

LOG = ModuleLog(__name__)

STREAMING_PLUGIN_ID = "ovos-stt-plugin-google-apikey-streaming"
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


class GoogleStreamThread(StreamThread):
    """One utterance: buffers every chunk, and uploads it as it comes when it can."""

    def __init__(self, queue: "Queue[Optional[bytes]]", language: str,
                 engine: "GoogleAPIKeyStreamingSTT") -> None:
        super().__init__(queue, language)
        self.daemon = True
        self.engine = engine
        self.buffer = bytearray()
        self.transcript: Optional[Transcript] = None
        self.error: Optional[BaseException] = None
        self.abandoned = False

    def handle_audio_stream(self, audio: Iterator[bytes], language: str) -> None:
        try:
            self.transcript = self._recognize(audio, language)
        except BaseException as exc:      # handed to the caller's thread by finalize()
            self.error = exc

    def abandon(self) -> None:
        """Give up on this utterance: nothing more is sent and no fallback runs."""
        self.abandoned = True
        self.queue.put(None)

    def finalize(self) -> Optional[str]:
        """Wait for the recognition (OPM calls this before join) and give its text."""
        self.join()
        if self.error is not None:
            raise self.error
        self.text = self.transcript.text if self.transcript else ""
        return self.text

    def _recognize(self, audio: Iterator[bytes], language: str) -> Transcript:
        engine = self.engine
        google_lang = engine.google_language(language)
        if not engine.progressive_ok(language):
            engine.recognizer.client.warm()          # DNS, TCP and TLS while the user speaks
            self.buffer.extend(b"".join(audio))
            return self._ordinary()
        try:
            answer = engine.recognizer.client.recognize_streaming(self._body(audio, google_lang))
            return parse_response(answer)
        except _Abandon as why:
            if self.abandoned:
                return Transcript()
            engine.fell_back(str(why), expected=why.expected)
        except APIError as exc:
            if exc.status == LENGTH_REQUIRED or (exc.status in REFUSALS and not exc.reason):
                engine.refused(f"the endpoint refused a chunked upload (HTTP {exc.status})")
            elif not isinstance(exc, UnavailableError):
                raise                      # the key, quota or request: the same again would fail
            else:
                engine.fell_back(f"the progressive upload failed: {exc}")
        self.buffer.extend(b"".join(audio))   # whatever is still queued
        return self._ordinary()

    def _body(self, audio: Iterator[bytes], google_lang: str) -> Iterator[bytes]:
        engine = self.engine
        body = build_recognize_body(engine.settings, b"", google_lang,
                                    sample_rate=engine.sample_rate, model=engine.model_for(google_lang))
        head, tail = body_parts(body)
        yield head
        sent = 0
        limit = int(CHUNK_SECONDS * engine.sample_rate) * engine.sample_width
        for chunk in audio:
            if self.abandoned:
                raise _Abandon("abandoned")
            self.buffer.extend(chunk)
            if len(self.buffer) > limit:
                raise _Abandon("the utterance passed Google's one-minute limit", expected=True)
            usable = (len(self.buffer) - sent) // 3 * 3       # base64 stays valid across chunks
            if usable:
                yield base64.b64encode(self.buffer[sent:sent + usable])
                sent += usable
        if self.abandoned or not self.buffer:
            raise _Abandon("abandoned" if self.abandoned else "no audio", expected=True)
        if engine.google_language(self.language) != google_lang:
            raise _Abandon("the listener changed the language at the end of the utterance",
                           expected=True)
        yield base64.b64encode(self.buffer[sent:]) + tail

    def _ordinary(self) -> Transcript:
        if self.abandoned or not self.buffer:
            return Transcript()
        pcm = audio_mod.from_raw(bytes(self.buffer), self.engine.sample_rate, self.engine.sample_width)
        return self.engine.recognize(pcm, self.language)


class GoogleAPIKeyStreamingSTT(GoogleAPIKeySTT, StreamingSTT):
    """The one-shot plugin's settings and errors, fed by OVOS's listener as the user speaks.

    Extra setting: ``progressive_upload`` (default true). The audio format is the listener's
    (``listener.sample_rate`` / ``sample_width`` in mycroft.conf, 16000 / 2 by default). It is
    the listener's fallback (``is_fallback``: uploads nothing while the user speaks) when
    mycroft.conf names it as ``stt.fallback_module`` and not as ``stt.module``.
    """

    # Its own section of mycroft.conf, else the one-shot plugin's: the settings are shared.
    config_sections = (STREAMING_PLUGIN_ID, PLUGIN_ID)

    def __init__(self, config: Optional[Dict[str, Any]] = None) -> None:
        super().__init__(config)
        from ovos_config import Configuration
        conf = Configuration()
        listener = conf.get("listener", {})
        self.sample_rate = int(self.config.get("sample_rate") or listener.get("sample_rate") or 16000)
        self.sample_width = int(self.config.get("sample_width") or listener.get("sample_width") or 2)
        stt = conf.get("stt", {})
        self.is_fallback = (stt.get("fallback_module") == STREAMING_PLUGIN_ID
                            and stt.get("module") != STREAMING_PLUGIN_ID)
        self._refused: Set[str] = set()
        self._lock = threading.Lock()

    def create_streaming_thread(self) -> GoogleStreamThread:
        return GoogleStreamThread(self.queue, self.lang, self)

    def stream_start(self, language: Optional[str] = None) -> None:
        """Begin an utterance. An unfinished earlier one is abandoned, not sent to Google."""
        if self.stream is not None:
            self.stream.abandon()
            self.stream = None
        super().stream_start(language)

    def stream_stop(self) -> Optional[str]:
        """End the utterance: its text ("" for no speech), or None without a stream."""
        transcript = self._finish()
        return None if transcript is None else transcript.text

    def transcribe(self, audio: Any = None, lang: Optional[str] = None) -> List[Tuple[str, float]]:
        """The streamed utterance (audio None), else ``audio`` the one-shot way. [] for no speech."""
        if audio is not None:
            return super().transcribe(audio, lang)
        transcript = self._finish(lang)
        return as_tuples(transcript) if transcript else []

    def execute(self, audio: Any = None, language: Optional[str] = None) -> str:
        if audio is not None:
            return super().execute(audio, language)
        transcript = self._finish(language)
        return transcript.text if transcript else ""

    def _finish(self, lang: Optional[str] = None) -> Optional[Transcript]:
        """Close the stream and wait for its transcript; raises what recognition raised."""
        stream = self.stream
        if stream is None:
            return None
        if lang:                      # the listener may settle the language only now
            stream.language = lang
        self.stream = None
        stream.queue.put(None)
        try:
            stream.finalize()
            return stream.transcript or Transcript()
        finally:
            self.queue = None
            self.transcript_ready.set()

    # -- used by the stream thread

    def progressive_ok(self, language: str) -> bool:
        return (self.settings.progressive_upload and not self.is_fallback and language != "auto"
                and self.settings.encoding == "linear16"
                and self.sample_width == 2 and 8000 <= self.sample_rate <= 48000
                and self.settings.endpoint not in self._refused)

    def model_for(self, google_lang: str) -> Optional[str]:
        return None if google_lang in self.recognizer.model_refused_for else self.settings.model

    def refused(self, why: str) -> None:
        with self._lock:
            self._refused.add(self.settings.endpoint)
        LOG.warning("%s; uploading after the user stops speaking from now on", why)

    def fell_back(self, why: str, expected: bool = False) -> None:
        """A failed upload is a WARNING; an utterance that only fits the ordinary path, INFO."""
        (LOG.info if expected else LOG.warning)("%s; transcribing the buffered audio instead", why)
