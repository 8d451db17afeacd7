"""Test-only OVOS plugins: a microphone that plays WAVs in real time, a wake word that never fires."""
from __future__ import annotations

import time
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ovos_plugin_manager.templates.hotwords import HotWordEngine
from ovos_plugin_manager.templates.microphone import Microphone
from ovos_utils.log import LOG


@dataclass
class WavFolderMicrophone(Microphone):
    """A live microphone in a quiet room: digital silence, and each WAV dropped into ``folder``
    (in name order) played once, at the pace a sound card delivers it.

    Chunks come one ``seconds_per_chunk`` apart on the wall clock. While a WAV plays, a reader
    that fell behind gets the backlog at once, as from a sound card's buffer; between WAVs the
    backlog of silence is skipped. Drop a file by renaming it into the folder, so it is whole.
    """
    folder: str = ""

    def __post_init__(self) -> None:
        self._pending = b""
        self._due = 0.0
        self._running = False

    def start(self) -> None:
        Path(self.folder).mkdir(parents=True, exist_ok=True)
        self._due = time.monotonic()
        self._running = True

    def stop(self) -> None:
        self._running = False

    def read_chunk(self) -> Optional[bytes]:
        if not self._running:
            return None
        self._due += self.seconds_per_chunk
        if not self._pending:
            self._pending = self._next_wav()
            if not self._pending:
                self._due = max(self._due, time.monotonic())    # idle: no burst of old silence
        wait = self._due - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        chunk, self._pending = self._pending[:self.chunk_size], self._pending[self.chunk_size:]
        return chunk.ljust(self.chunk_size, b"\0")

    def _next_wav(self) -> bytes:
        for path in sorted(Path(self.folder).glob("*.wav")):
            try:
                with wave.open(str(path), "rb") as w:
                    shape = (w.getframerate(), w.getsampwidth(), w.getnchannels())
                    frames = w.readframes(w.getnframes())
            finally:
                path.unlink()
            if shape != (self.sample_rate, self.sample_width, self.sample_channels):
                LOG.error(f"skipping {path.name}: {shape} is not this microphone's "
                          f"{(self.sample_rate, self.sample_width, self.sample_channels)}")
                continue
            seconds = len(frames) / (self.sample_rate * self.sample_width * self.sample_channels)
            LOG.info(f"playing {path.name}: {seconds:.2f} s")
            return frames
        return b""


class NeverWakeWord(HotWordEngine):
    """A wake-word engine that never fires: the listener is woken with ``mycroft.mic.listen``."""

    def update(self, chunk: bytes) -> None:
        pass

    def found_wake_word(self, *args: object) -> bool:
        return False
