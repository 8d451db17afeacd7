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

from queue import Queue
from typing import Any, Dict, Iterator, List, Optional, Tuple

from ovos_plugin_manager.templates.stt import StreamingSTT, StreamThread

from .plugin import PLUGIN_ID, GoogleAPIKeySTT, as_tuples
from .streamed import StreamedUpload
from .wire import Transcript

STREAMING_PLUGIN_ID = "ovos-stt-plugin-google-apikey-streaming"


class GoogleStreamThread(StreamThread):
    """One utterance: OPM's thread around the recognizer's StreamedUpload."""

    def __init__(self, queue: "Queue[Optional[bytes]]", language: str,
                 engine: "GoogleAPIKeyStreamingSTT") -> None:
        super().__init__(queue, language)
        self.daemon = True
        self.upload = StreamedUpload(engine.recognizer, language, sample_rate=engine.sample_rate,
                                     sample_width=engine.sample_width,
                                     progressive=not engine.is_fallback)
        self.transcript: Optional[Transcript] = None
        self.error: Optional[BaseException] = None

    def handle_audio_stream(self, audio: Iterator[bytes], language: str) -> None:
        try:
            self.upload.lang = language          # OPM sets it after making the thread
            self.transcript = self.upload.run(audio)
        except BaseException as exc:      # handed to the caller's thread by finalize()
            self.error = exc

    def settle_language(self, language: str) -> None:
        """The language the listener settled on at the end (before the last chunk is queued)."""
        self.language = language
        self.upload.lang = language

    def abandon(self) -> None:
        """Give up on this utterance: nothing more is sent and no fallback runs."""
        self.upload.abandon()
        self.queue.put(None)

    def finalize(self) -> Optional[str]:
        """Wait for the recognition (OPM calls this before join) and give its text."""
        self.join()
        if self.error is not None:
            raise self.error
        self.text = self.transcript.text if self.transcript else ""
        return self.text


class GoogleAPIKeyStreamingSTT(GoogleAPIKeySTT, StreamingSTT):
    """The one-shot plugin's settings and errors, fed by OVOS's listener as the user speaks.

    Extra setting: ``progressive_upload`` (default true). The audio format is the listener's
    (``listener.sample_rate`` / ``sample_width`` in mycroft.conf, 16000 / 2 by default). It is
    the listener's fallback (``is_fallback``: uploads nothing while the user speaks) when
    mycroft.conf names it as ``stt.fallback_module`` and not as ``stt.module``.
    """

    # Its own section of mycroft.conf, else the one-shot plugin's: the settings are shared.
    config_sections = (STREAMING_PLUGIN_ID, PLUGIN_ID)
    # Set by OPM's StreamingSTT (it ships no types): the listener's chunks and the utterance.
    queue: Any
    stream: Optional[GoogleStreamThread]

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
            stream.settle_language(lang)
        self.stream = None
        stream.queue.put(None)
        try:
            stream.finalize()
            return stream.transcript or Transcript()
        finally:
            self.queue = None
            self.transcript_ready.set()
