"""The Wyoming protocol (Home Assistant's) in front of the streaming plugin: the audio is
uploaded to Google while it arrives, so the transcript follows AudioStop by Google's own time.

One connection is one request, as Home Assistant sends it: ``transcribe`` (its language),
``audio-start``, ``audio-chunk``..., ``audio-stop``; we answer ``transcript`` or ``error`` and
close. ``describe`` gets ``info`` and ``ping`` gets ``pong`` on any connection. Whatever the
client sends, the answer is one of these events or a closed connection, within a deadline.
"""
from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import re
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any, Dict, Optional, Tuple

from ovos_utils.lang import standardize_lang_tag
from wyoming.asr import Transcribe, Transcript
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.error import Error
from wyoming.event import Event, async_write_event
from wyoming.info import AsrModel, AsrProgram, Attribution, Describe, Info, SelectProgram
from wyoming.ping import Ping, Pong
from wyoming.server import AsyncEventHandler, AsyncServer, AsyncTcpServer

from . import audio as audio_mod
from .errors import AudioError, AudioTooLongError, ConfigError, DeadlineError, GoogleSTTError, UnavailableError
from .log import ModuleLog
from .settings import KEY_ENV_VARS, Settings
from .streaming import GoogleAPIKeyStreamingSTT
from .version import __version__

LOG = ModuleLog(__name__)

PROGRAM = "google-stt-apikey"
ATTRIBUTION = Attribution(name="OpenVoiceOS plugin, Google API key",
                          url="https://github.com/OpenVoiceOS/ovos-stt-plugin-google-apikey")
GOOGLE = Attribution(name="Google Cloud Speech-to-Text",
                     url="https://cloud.google.com/speech-to-text")
# v1 speech:recognize answers once, after the audio: no interim results to stream.
TRANSCRIPT_STREAMING = False
ZEROCONF_TYPE = "_wyoming._tcp.local."
MDNS_GROUP = "224.0.0.251"
# After an error event, what the client still sends is read and dropped for this long, so the
# close is a FIN the client reads after the error, not a reset that may discard it: Home
# Assistant writes all its audio before it reads anything.
LINGER_SECONDS = 2.0


HEADER_LIMIT = 64 * 1024        # asyncio's StreamReader line limit, which the servers keep
MAX_DATA = 64 * 1024            # an event's extra JSON (data_length)
MAX_PAYLOAD = 1024 * 1024       # one audio chunk: 5 s of 48 kHz 16-bit stereo
LANG_TAG = re.compile(r"[A-Za-z]{2,8}([-_][A-Za-z0-9]{1,8}){0,4}")


class ProtocolError(GoogleSTTError):
    """The client broke the Wyoming protocol: a malformed event, audio out of order."""


def stream_rate(rate: int) -> int:
    """The rate sent to Google for audio at ``rate``: the same when Google takes it."""
    return rate if audio_mod.GOOGLE_MIN_RATE <= rate <= audio_mod.GOOGLE_MAX_RATE \
        else audio_mod.FALLBACK_RATE


def convert(data: bytes, fmt: Tuple[int, int, int], rate: int) -> bytes:
    """Whole frames of PCM in ``fmt`` (rate, width, channels) as 16-bit mono at ``rate``."""
    pcm = audio_mod.to_linear16(audio_mod.from_raw(data, *fmt))
    return audio_mod.resample(pcm, rate).data


async def read_event(reader: asyncio.StreamReader, max_payload: int) -> Optional[Event]:
    """The next event, None when the client has gone; ProtocolError for a malformed one (the
    wyoming package's reader would wait for, and buffer, any payload_length it is given)."""
    try:
        line = await reader.readline()
    except ValueError as exc:                     # asyncio's LimitOverrunError, via readline
        raise ProtocolError(f"an event header longer than {HEADER_LIMIT} bytes") from exc
    if not line.endswith(b"\n"):
        return None
    try:
        header = json.loads(line)
    except ValueError as exc:
        raise ProtocolError("an event header that is not JSON: send one JSON object per line") from exc
    if not isinstance(header, dict) or not isinstance(header.get("type"), str):
        raise ProtocolError("an event header must be a JSON object with a string 'type'")
    data = header.get("data") or {}
    if not isinstance(data, dict):
        raise ProtocolError("an event's 'data' must be a JSON object")
    data_length = _length(header, "data_length", MAX_DATA)
    payload_length = _length(header, "payload_length", max_payload)
    try:
        if data_length:
            extra = json.loads(await reader.readexactly(data_length))
            if not isinstance(extra, dict):
                raise ProtocolError("an event's extra data must be a JSON object")
            data.update(extra)
        payload = await reader.readexactly(payload_length) if payload_length else None
    except asyncio.IncompleteReadError:
        return None
    except ValueError as exc:
        raise ProtocolError("an event's extra data is not JSON") from exc
    return Event(type=header["type"], data=data, payload=payload)


def _length(header: Dict[str, Any], name: str, limit: int) -> int:
    value = header.get(name) or 0
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ProtocolError(f"'{name}' must be a whole number of bytes; got {value!r:.50}")
    if value > limit:
        raise ProtocolError(f"'{name}' of {value} bytes: at most {limit} in one event")
    return value


def audio_format(data: Dict[str, Any]) -> Tuple[int, int, int]:
    """(rate, width, channels) of an audio event; AudioError when they are not usable."""
    try:
        fmt = tuple(data[name] for name in ("rate", "width", "channels"))
    except KeyError as exc:
        raise ProtocolError(f"an audio event without '{exc.args[0]}'") from exc
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in fmt):
        raise AudioError(f"rate, width and channels must be whole numbers; got {fmt!r:.80}")
    audio_mod.PCM(b"", *fmt)                      # AudioError for a rate/width/channels we cannot use
    return fmt


def language(value: Any) -> Optional[str]:
    """Transcribe's language: None (the configured one) or a tag; ConfigError otherwise."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not (value == "auto" or LANG_TAG.fullmatch(value)):
        raise ConfigError(f"the language must be a tag such as en-US or pt-PT; got {value!r:.60}")
    return value


class BusyError(UnavailableError):
    """Every connection the server allows (``--max-connections``) is taken: try again."""


@dataclass(frozen=True)
class Options:
    """The server's limits (the CLI's defaults)."""

    max_connections: int = 64
    idle_timeout: float = 30.0           # seconds a connection may send nothing
    max_audio_seconds: float = 120.0     # as the HTTP server's
    max_payload: int = MAX_PAYLOAD

    def __post_init__(self) -> None:
        if self.max_connections < 1 or not self.idle_timeout > 0 or not self.max_audio_seconds > 0:
            raise ConfigError("max_connections, idle_timeout and max_audio_seconds must be over 0")


def build_engine(config: Dict[str, Any]) -> Optional[GoogleAPIKeyStreamingSTT]:
    """The shared engine, or None without a key (each request then gets an error event).

    Raises ConfigError for any other bad setting.
    """
    if not Settings.from_mapping(config).has_key:
        LOG.error("no Google API key: set the environment variable %s (or 'key' in the plugin's "
                  "config) and restart; until then every request gets an error event",
                  KEY_ENV_VARS[0])
        return None
    return GoogleAPIKeyStreamingSTT(config)


def build_info(settings: Settings) -> Info:
    """Describe's answer: one ASR program, its languages in OVOS's (standard) tags."""
    languages = sorted(GoogleAPIKeyStreamingSTT.available_languages)
    model = AsrModel(name=settings.model or "default", description=f"Google Speech-to-Text v1, "
                     f"model {settings.model or 'default'}", attribution=GOOGLE, installed=True,
                     version="v1", languages=languages)
    return Info(asr=[AsrProgram(name=PROGRAM, description="Google Cloud Speech-to-Text with an "
                                "API key", attribution=ATTRIBUTION, installed=True,
                                version=__version__, models=[model],
                                supports_transcript_streaming=TRANSCRIPT_STREAMING)])


def session(engine: GoogleAPIKeyStreamingSTT, rate: int) -> GoogleAPIKeyStreamingSTT:
    """One connection's view of the shared engine: its own stream and audio format; the same
    settings, recognizer, pooled connections to Google and memory of refused uploads."""
    view = copy.copy(engine)
    view.stream = None
    view.queue = None                 # OPM's, untyped
    view.transcript_ready = threading.Event()
    view.sample_rate, view.sample_width = rate, 2
    view.is_fallback = False          # mycroft.conf's listener fallback is not about us
    return view


def announcement(name: str, host: str, port: int) -> Any:
    """The zeroconf service Home Assistant discovers (its Wyoming integration browses
    _wyoming._tcp). A wildcard host is announced as the address that routes to the LAN."""
    from zeroconf.asyncio import AsyncServiceInfo
    if host in ("", "0.0.0.0", "::"):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect((MDNS_GROUP, 1))        # UDP: picks a route, sends nothing
            host = probe.getsockname()[0]
    return AsyncServiceInfo(ZEROCONF_TYPE, f"{name}.{ZEROCONF_TYPE}",
                            addresses=[socket.inet_aton(host)], port=port)


class Connections:
    """At most ``limit`` connections served at once (counted on the event loop's thread), and a
    thread for each to wait for its transcript on: asyncio's default executor has cpu + 4."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open = 0
        self.waiting = ThreadPoolExecutor(limit, thread_name_prefix="wyoming-transcript")

    def enter(self) -> bool:
        if self.open >= self.limit:
            return False
        self.open += 1
        return True

    def leave(self) -> None:
        self.open -= 1


class Handler(AsyncEventHandler):
    """One client connection: at most one utterance at a time, streamed to Google."""

    def __init__(self, engine: Optional[GoogleAPIKeyStreamingSTT], info: Event, options: Options,
                 connections: Connections, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        super().__init__(reader, writer)
        self.engine = engine
        self.info = info
        self.options = options
        self.connections = connections
        self.language: Optional[str] = None
        self.view: Optional[GoogleAPIKeyStreamingSTT] = None   # set from AudioStart to AudioStop
        self.rate = 0
        self.seconds = 0.0
        self.remainder = b""
        self.utterance_deadline = float("inf")
        self.refused = False

    async def run(self) -> None:
        """Events until the request is answered, the client leaves or breaks a limit."""
        if not self.connections.enter():
            await self._refuse(BusyError(f"the server is busy: {self.connections.limit} connections "
                                         "are open (--max-connections); try again"))
            await self._linger()              # bounded: then the descriptor is let go
            self.writer.close()
            return
        try:
            while await self._next():
                pass
        except (ConnectionError, OSError, asyncio.TimeoutError):
            pass                              # the client went away, or stopped reading answers
        except Exception:                     # the edge: one broken request, not the server
            LOG.exception("wyoming: the request failed")
            await self._refuse(GoogleSTTError("internal error; see the server's log"))
        finally:
            self._abandon()
            if self.refused:
                await self._linger()
            self.connections.leave()
            self.writer.close()

    async def _linger(self) -> None:
        deadline = time.monotonic() + min(LINGER_SECONDS, self.options.idle_timeout)
        with contextlib.suppress(ConnectionError, OSError, asyncio.TimeoutError):
            if self.writer.can_write_eof():
                self.writer.write_eof()
            while await asyncio.wait_for(self.reader.read(65536), deadline - time.monotonic()):
                pass

    async def _next(self) -> bool:
        wait = min(self.options.idle_timeout, self.utterance_deadline - time.monotonic())
        try:
            event = await asyncio.wait_for(read_event(self.reader, self.options.max_payload),
                                           max(0.0, wait))
        except asyncio.TimeoutError:
            await self._refuse(DeadlineError(
                f"nothing received for {self.options.idle_timeout:g} s (--idle-timeout), or the "
                "audio arrived slower than it plays: closing the connection"))
            return False
        except ProtocolError as exc:
            await self._refuse(exc)
            return False
        if event is None:
            return False
        try:
            return await self.handle_event(event)
        except GoogleSTTError as exc:
            await self._refuse(exc)
            return False

    async def handle_event(self, event: Event) -> bool:
        """False when the connection is done. Raises GoogleSTTError to answer an error."""
        if AudioChunk.is_type(event.type):
            self._chunk(event)
            return True
        if AudioStart.is_type(event.type):
            self._start(event)
            return True
        if AudioStop.is_type(event.type):
            await self._stop()
            return False
        if Transcribe.is_type(event.type):
            self._abandon()                   # a new request replaces an unfinished one
            self.language = language(event.data.get("language"))
        elif Describe.is_type(event.type):
            await self.write_event(self.info)
        elif Ping.is_type(event.type):
            await self.write_event(Pong(text=Ping.from_event(event).text).event())
        elif SelectProgram.is_type(event.type):
            if event.data.get("name") != PROGRAM:
                raise ProtocolError(f"no program {event.data.get('name')!r:.60}; this server has "
                                    f"'{PROGRAM}'")
        else:                                 # the protocol says: drop it; we also say so
            await self.write_event(Error(text=f"unknown event type {event.type!r:.60}: ignored",
                                         code=ProtocolError.__name__).event())
        return True

    async def write_event(self, event: Event) -> None:
        # A client that stops reading would block drain() forever.
        await asyncio.wait_for(async_write_event(event, self.writer), self.options.idle_timeout)

    def _start(self, event: Event) -> None:
        fmt = audio_format(event.data)
        if self.engine is None:
            raise ConfigError(f"no Google API key: set the environment variable {KEY_ENV_VARS[0]} "
                              "(or 'key' in the plugin's config) where the server runs, and restart it")
        self._abandon()
        self.rate = stream_rate(fmt[0])
        self.view = session(self.engine, self.rate)
        self.view.stream_start(self.language)
        self.seconds, self.remainder = 0.0, b""
        # Audio that arrives slower than it plays is a stalled client, not a long utterance.
        self.utterance_deadline = (time.monotonic() + self.options.max_audio_seconds
                                   + self.options.idle_timeout)

    def _chunk(self, event: Event) -> None:
        if self.view is None:
            raise ProtocolError("audio-chunk before audio-start: send transcribe, audio-start, "
                                "audio-chunk..., audio-stop")
        fmt = audio_format(event.data)
        data = self.remainder + (event.payload or b"")
        frame = fmt[1] * fmt[2]
        whole = len(data) - len(data) % frame
        self.remainder = data[whole:]
        self.seconds += whole / (frame * fmt[0])
        if self.seconds > self.options.max_audio_seconds:
            raise AudioTooLongError(f"the audio passed {self.options.max_audio_seconds:g} s "
                                    "(--max-audio-seconds): send shorter utterances")
        if whole:                             # each chunk in its own format: a change is converted
            self.view.stream_data(convert(data[:whole], fmt, self.rate))

    async def _stop(self) -> None:
        view = self.view
        if view is None or view.stream is None:
            raise ProtocolError("audio-stop before audio-start")
        stream, self.view = view.stream, None
        stopped = time.monotonic()
        text = await asyncio.get_running_loop().run_in_executor(self.connections.waiting, view.stream_stop)
        language = stream.language
        if language == "auto" and stream.transcript is not None and stream.transcript.language:
            language = standardize_lang_tag(stream.transcript.language)    # Google's pick, OVOS's form
        LOG.info("wyoming: %.2f s of %s audio transcribed %.0f ms after audio-stop", self.seconds,
                 language, (time.monotonic() - stopped) * 1000)
        await self.write_event(Transcript(text=text or "", language=language).event())

    def _abandon(self) -> None:
        """Drop an unfinished utterance: nothing more goes to Google, no fallback runs."""
        view, self.view = self.view, None
        if view is not None and view.stream is not None:
            view.stream.abandon()
            view.stream = None

    async def _refuse(self, exc: GoogleSTTError) -> None:
        """Tell the client what failed (our message: never the key) and end the request."""
        LOG.warning("wyoming: %s: %s", type(exc).__name__, exc)
        self._abandon()
        self.refused = True
        try:
            await self.write_event(Error(text=str(exc), code=type(exc).__name__).event())
        except (ConnectionError, OSError, asyncio.TimeoutError):
            pass


class WyomingServer:
    """The Wyoming server on ``uri`` (tcp:// or unix://), optionally announced by zeroconf."""

    def __init__(self, uri: str, engine: Optional[GoogleAPIKeyStreamingSTT], settings: Settings,
                 options: Options = Options(), zeroconf_name: Optional[str] = None) -> None:
        if not uri.startswith(("tcp://", "unix://")):
            raise ConfigError(f"--uri must be tcp://HOST:PORT or unix://PATH; got {uri!r}")
        try:
            self.server = AsyncServer.from_uri(uri)
        except ValueError as exc:
            raise ConfigError(f"--uri {uri}: {exc}") from exc
        if zeroconf_name and not isinstance(self.server, AsyncTcpServer):
            raise ConfigError("--zeroconf needs a tcp:// --uri")
        if engine is not None:        # a Google connection for every utterance at once
            engine.recognizer.reserve(options.max_connections)
        self.factory = partial(Handler, engine, build_info(settings).event(), options,
                               Connections(options.max_connections))
        self.zeroconf_name = zeroconf_name
        self._zeroconf: Any = None

    async def start(self) -> None:
        await self.server.start(self.factory)
        if self.zeroconf_name:
            from zeroconf.asyncio import AsyncZeroconf
            host, port = self.address()
            self._zeroconf = AsyncZeroconf()
            await self._zeroconf.async_register_service(announcement(self.zeroconf_name, host, port))
            LOG.info("wyoming: announced as %s over zeroconf", self.zeroconf_name)

    def address(self) -> Tuple[str, int]:
        """The TCP address actually bound (port 0 picks one)."""
        # AsyncTcpServer keeps its asyncio server private; it is the only place the port is.
        sockets = getattr(getattr(self.server, "_server", None), "sockets", None) or []
        if not sockets:
            raise RuntimeError("the server is not listening on TCP")
        return sockets[0].getsockname()[:2]

    async def stop(self) -> None:
        if self._zeroconf is not None:
            await self._zeroconf.async_close()         # unregisters what it registered
        await self.server.stop()


async def serve(server: WyomingServer) -> None:
    """Run until SIGTERM or SIGINT."""
    import signal
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    await server.start()
    LOG.info("wyoming: serving Home Assistant on %s (Ctrl+C to stop)", _shown(server))
    try:
        await stopping.wait()
    finally:
        await server.stop()


def _shown(server: WyomingServer) -> str:
    try:
        host, port = server.address()
    except RuntimeError:
        return str(getattr(server.server, "socket_path", "?"))
    return f"tcp://{host}:{port}"
