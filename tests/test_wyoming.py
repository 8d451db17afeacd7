"""`ovos-google-stt wyoming`: Home Assistant's event sequence over a real socket, with the wyoming
package's own client, against the fake Google; hostile clients over raw sockets."""
from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import subprocess
import sys
import threading
import time
from typing import Iterator, List, Optional

import pytest

pytest.importorskip("wyoming")

from audio_samples import tone  # noqa: E402
from conftest import KEY  # noqa: E402
from fake_google import Fault  # noqa: E402
from wyoming.asr import Transcribe, Transcript  # noqa: E402
from wyoming.audio import AudioChunk, AudioStart, AudioStop  # noqa: E402
from wyoming.client import AsyncTcpClient  # noqa: E402
from wyoming.error import Error  # noqa: E402
from wyoming.event import Event, read_event  # noqa: E402
from wyoming.info import Describe, Info  # noqa: E402

from ovos_stt_plugin_google_apikey import wyoming as wy  # noqa: E402
from ovos_stt_plugin_google_apikey.settings import Settings  # noqa: E402
from ovos_stt_plugin_google_apikey.streaming import GoogleAPIKeyStreamingSTT  # noqa: E402

WAIT = 30.0          # no answer within this is a hang, whatever the machine's load


@contextlib.contextmanager
def running(config: Optional[dict], options: Optional[wy.Options] = None) -> Iterator[int]:
    """The server as the CLI builds it, on its own event loop thread; yields its port."""
    engine = wy.build_engine(config) if config is not None else None
    server = wy.WyomingServer("tcp://127.0.0.1:0", engine, Settings.from_mapping(config or {}, env={}),
                              options or wy.Options())
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        asyncio.run_coroutine_threadsafe(server.start(), loop).result(WAIT)
        yield server.address()[1]
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result(WAIT)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(WAIT)
        if engine is not None:
            engine.shutdown()


@pytest.fixture
def config(fake):
    return {"key": KEY, "endpoint": fake.endpoint, "lang": "en-US", "timeout": 10}


@pytest.fixture
def port(config):
    with running(config) as port:
        yield port


def chunks(pcm: bytes, rate: int, width: int, channels: int, frames: int = 1024) -> List[AudioChunk]:
    step = frames * width * channels
    return [AudioChunk(rate=rate, width=width, channels=channels, audio=pcm[i:i + step])
            for i in range(0, len(pcm), step)]


async def home_assistant(port: int, pcm: bytes, language: Optional[str], rate: int = 16000,
                         width: int = 2, channels: int = 1, pieces: Optional[List[AudioChunk]] = None,
                         pause: float = 0.0) -> dict:
    """What homeassistant/components/wyoming/stt.py sends (it reads until a Transcript; here
    an Error ends the wait too, and whether the server then closed is recorded)."""
    async with AsyncTcpClient("127.0.0.1", port) as client:
        with contextlib.suppress(ConnectionError):      # a server that refused may close early
            await client.write_event(Transcribe(language=language).event())
            await client.write_event(AudioStart(rate=rate, width=width, channels=channels).event())
            for chunk in pieces if pieces is not None else chunks(pcm, rate, width, channels):
                await client.write_event(chunk.event())
                if pause:
                    await asyncio.sleep(pause)
            await client.write_event(AudioStop().event())
        stopped = time.monotonic()
        while True:
            event = await asyncio.wait_for(client.read_event(), WAIT)
            if event is None or Transcript.is_type(event.type) or Error.is_type(event.type):
                break
        closed = event is not None and await asyncio.wait_for(client.read_event(), WAIT) is None
        return {"event": event, "stopped": stopped, "closed": closed}


def ask(port: int, *events: Event) -> Optional[Event]:
    async def go() -> Optional[Event]:
        async with AsyncTcpClient("127.0.0.1", port) as client:
            for event in events:
                await client.write_event(event)
            return await asyncio.wait_for(client.read_event(), WAIT)
    return asyncio.run(go())


def recognitions(fake):
    return [r for r in fake.requests if r.method == "POST" and r.json]


def test_describe_gives_one_asr_program_in_standard_tags(port):
    info = Info.from_event(ask(port, Describe().event()))
    [program] = info.asr
    assert program.name == wy.PROGRAM and program.installed and program.version
    assert program.supports_transcript_streaming is False        # v1 REST: no interim results
    assert program.attribution.url.startswith("https://")
    [model] = program.models
    assert model.installed and model.attribution.name.startswith("Google")
    assert model.languages == sorted(GoogleAPIKeyStreamingSTT.available_languages)
    assert "en-US" in model.languages and "pt-PT" in model.languages


def test_home_assistant_sequence_reaches_google_in_its_language_while_streaming(port, fake, caplog):
    caplog.set_level("DEBUG")
    result = asyncio.run(home_assistant(port, tone(1.0), "pt-PT", pause=0.05))   # about real time, as a microphone sends
    transcript = Transcript.from_event(result["event"])
    assert transcript.text == "audio 1.00 seconds at 16000 hertz"
    assert transcript.language == "pt-PT"
    [sent] = recognitions(fake)
    assert sent.json["config"]["languageCode"] == "pt-PT"
    assert sent.chunked and sent.received_at < result["stopped"]      # uploading before the end
    assert sent.headers["X-Goog-Api-Key"] == KEY and "key" not in sent.query
    assert result["closed"]                                           # one request per connection
    assert KEY not in caplog.text


@pytest.mark.parametrize("fault", ["refused", "dropped"])
def test_a_failed_streamed_upload_falls_back_and_loses_nothing(port, fake, fault, caplog):
    if fault == "refused":
        fake.refuse_chunked = 411               # a proxy that takes no chunked bodies
    else:
        fake.script(Fault.drop())               # the progressive request's connection drops
    result = asyncio.run(home_assistant(port, tone(1.0), "pt-PT"))
    assert Transcript.from_event(result["event"]).text == "audio 1.00 seconds at 16000 hertz"
    assert [r.chunked for r in fake.requests if r.method == "POST"] == [True, False]
    assert recognitions(fake)[-1].json["config"]["languageCode"] == "pt-PT"
    assert KEY not in caplog.text


def test_connections_share_one_engine_a_refusal_is_remembered(port, fake):
    fake.refuse_chunked = 411
    for _ in range(2):
        result = asyncio.run(home_assistant(port, tone(0.5), "en-US"))
        assert Transcript.from_event(result["event"]).text == "audio 0.50 seconds at 16000 hertz"
    assert [r.chunked for r in fake.requests if r.method == "POST"] == [True, False, False]


def test_no_audio_or_silence_is_an_empty_transcript_not_an_error(port, fake):
    result = asyncio.run(home_assistant(port, b"", "en-US"))          # audio-start, audio-stop
    assert Transcript.from_event(result["event"]).text == ""
    assert recognitions(fake) == []                                   # nothing sent to Google
    result = asyncio.run(home_assistant(port, bytes(16000), "en-US"))
    assert Transcript.from_event(result["event"]).text == ""
    assert len(recognitions(fake)) == 1


def test_a_configured_auto_lets_google_pick_and_says_which(fake, config):
    with running({**config, "lang": "auto", "auto_languages": ["pt-PT", "en-US"]}) as port:
        result = asyncio.run(home_assistant(port, tone(0.5), None))
    transcript = Transcript.from_event(result["event"])
    assert transcript.text == "audio 0.50 seconds at 16000 hertz"
    assert transcript.language == "pt-PT"               # the fake hears the first candidate
    [sent] = recognitions(fake)
    assert sent.json["config"]["languageCode"] == "pt-PT"
    assert sent.json["config"]["alternativeLanguageCodes"] == ["en-US"]


def test_a_unix_socket_uri(config, tmp_path):
    from wyoming.client import AsyncUnixClient
    path = tmp_path / "stt.sock"
    engine = wy.build_engine(config)
    server = wy.WyomingServer(f"unix://{path}", engine, Settings.from_mapping(config, env={}))

    async def go():
        await server.start()
        try:
            async with AsyncUnixClient(str(path)) as client:
                await client.write_event(Describe().event())
                return await asyncio.wait_for(client.read_event(), WAIT)
        finally:
            await server.stop()
    try:
        assert Info.is_type(asyncio.run(go()).type)
    finally:
        engine.shutdown()


def test_without_a_language_the_configured_one(fake, config):
    with running({**config, "lang": "de-DE"}) as port:
        result = asyncio.run(home_assistant(port, tone(0.5), None))
    assert Transcript.from_event(result["event"]).language == "de-DE"
    assert recognitions(fake)[0].json["config"]["languageCode"] == "de-DE"


@pytest.mark.parametrize("rate,width,channels,google_rate", [
    (44100, 2, 2, 44100),          # a satellite's 44.1 kHz stereo
    (48000, 4, 1, 48000),
    (96000, 3, 2, 16000),          # above what Google takes: resampled
    (8000, 1, 1, 8000)])
def test_any_declared_format_is_sent_as_16_bit_mono(port, fake, rate, width, channels, google_rate):
    pcm = tone(1.0, rate, width, channels)
    result = asyncio.run(home_assistant(port, pcm, "en-US", rate, width, channels))
    text = Transcript.from_event(result["event"]).text
    assert re.fullmatch(rf"audio (0\.99|1\.00) seconds at {google_rate} hertz", text)
    assert recognitions(fake)[0].json["config"]["sampleRateHertz"] == google_rate


def test_a_format_change_mid_stream_is_converted(port, fake):
    pieces = chunks(tone(0.5), 16000, 2, 1) + chunks(tone(0.5, 48000, 2, 2), 48000, 2, 2)
    result = asyncio.run(home_assistant(port, b"", "en-US", pieces=pieces))
    assert Transcript.from_event(result["event"]).text == "audio 1.00 seconds at 16000 hertz"


def test_odd_sized_chunks_lose_no_frames(port, fake):
    pcm = tone(1.0, 44100, 2, 2)
    pieces = [AudioChunk(rate=44100, width=2, channels=2, audio=pcm[i:i + 1001])
              for i in range(0, len(pcm), 1001)]
    result = asyncio.run(home_assistant(port, b"", "en-US", 44100, 2, 2, pieces=pieces))
    assert Transcript.from_event(result["event"]).text == "audio 1.00 seconds at 44100 hertz"


def test_a_google_error_is_an_error_event_and_the_server_keeps_serving(fake, config):
    with running({**config, "key": "wrong-key"}) as port:
        result = asyncio.run(home_assistant(port, tone(0.5), "en-US"))
        error = Error.from_event(result["event"])
        assert error.code == "InvalidKeyError" and "wrong-key" not in error.text
        assert "key" in error.text.lower() and result["closed"]
        assert Info.is_type(ask(port, Describe().event()).type)


def test_without_a_key_it_starts_and_answers_each_request_with_an_error(caplog):
    caplog.set_level("INFO")
    assert wy.build_engine({"lang": "en-US"}) is None
    assert "GOOGLE_STT_API_KEY" in caplog.text
    with running(None) as port:
        assert Info.is_type(ask(port, Describe().event()).type)
        for _ in range(2):
            result = asyncio.run(home_assistant(port, tone(0.2), "en-US"))
            error = Error.from_event(result["event"])
            assert error.code == "ConfigError" and "GOOGLE_STT_API_KEY" in error.text
            assert result["closed"]


def test_sixteen_clients_at_once_each_get_their_own_transcript(port, fake):
    languages = ["en-US", "pt-PT", "de-DE", "fr-FR"]

    async def many():
        return await asyncio.gather(*(home_assistant(port, tone(0.5 + 0.1 * n), languages[n % 4],
                                                     pause=0.002) for n in range(16)))
    results = asyncio.run(many())
    for n, result in enumerate(results):
        transcript = Transcript.from_event(result["event"])
        assert transcript.text == f"audio {0.5 + 0.1 * n:.2f} seconds at 16000 hertz"
        assert transcript.language == languages[n % 4]
    assert len(recognitions(fake)) == 16


def test_past_max_connections_a_client_gets_an_error(config):
    with running(config, wy.Options(max_connections=2)) as port:
        held = [socket.create_connection(("127.0.0.1", port), timeout=WAIT) for _ in range(2)]
        try:
            for sock in held:       # both are being served: they answer a ping
                sock.sendall(b'{"type": "ping"}\n')
                assert read_event(sock.makefile("rb")).type == "pong"
            # raw() reads until the server closes: a refused client is let go, not left holding
            # a descriptor (before, it stayed open with no deadline; this read timed out)
            [event] = raw(port, b'{"type": "describe"}\n')
            error = Error.from_event(event)
            assert error.code == "BusyError" and "--max-connections" in error.text
        finally:
            for sock in held:
                sock.close()
        for _ in range(100):        # the server sees the two leave; bounded
            answer = ask(port, Describe().event())
            if Info.is_type(answer.type):
                break
            time.sleep(0.05)
        assert Info.is_type(answer.type)


def raw(port: int, data: bytes, then_close: bool = False) -> List[Event]:
    """Send bytes over a plain socket; every event the server sends until it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
        sock.sendall(data)
        if then_close:
            sock.shutdown(socket.SHUT_WR)
        stream = sock.makefile("rb")
        events = []
        while (event := read_event(stream)) is not None:
            events.append(event)
        return events


def header(event: dict, payload: bytes = b"") -> bytes:
    return json.dumps(event).encode() + b"\n" + payload


START = header({"type": "audio-start", "data": {"rate": 16000, "width": 2, "channels": 1}})


@pytest.mark.parametrize("data,code,words", [
    (b"this is not json\n", "ProtocolError", "not JSON"),
    (b"[1, 2, 3]\n", "ProtocolError", "'type'"),
    (header({"type": "audio-chunk", "payload_length": 10**9}), "ProtocolError", "at most"),
    (header({"type": "describe", "data_length": -1}), "ProtocolError", "whole number"),
    (header({"type": "describe", "data_length": "7"}), "ProtocolError", "whole number"),
    (header({"type": "describe", "data": [1]}), "ProtocolError", "JSON object"),
    (header({"type": "audio-chunk", "data": {"rate": 16000, "width": 2, "channels": 1},
             "payload_length": 4}, b"\0\0\0\0"), "ProtocolError", "before audio-start"),
    (header({"type": "audio-stop"}), "ProtocolError", "before audio-start"),
    (header({"type": "audio-start", "data": {"rate": 0, "width": 2, "channels": 1}}), "AudioError", "rate"),
    (header({"type": "audio-start", "data": {"rate": 16000, "width": 7, "channels": 1}}), "AudioError",
     "width"),
    (header({"type": "audio-start", "data": {"rate": 16000, "width": 2, "channels": "2"}}), "AudioError",
     "whole numbers"),
    (header({"type": "audio-start", "data": {"rate": 16000, "width": 2}}), "ProtocolError", "channels"),
    (START + header({"type": "audio-chunk", "data": {"rate": 16000, "width": 2}, "payload_length": 2},
                    b"\0\0"), "ProtocolError", "channels"),
    (header({"type": "transcribe", "data": {"language": 5}}), "ConfigError", "tag"),
    (header({"type": "transcribe", "data": {"language": "en-US\nX-Injected: 1"}}), "ConfigError", "tag"),
    (header({"type": "transcribe", "data": {"language": "en-US\n"}}), "ConfigError", "tag"),
    (header({"type": "select-program", "data": {"name": "whisper"}}), "ProtocolError", wy.PROGRAM),
    (b"{" + b" " * (70 * 1024) + b"}\n", "ProtocolError", "longer than"),
])
def test_a_bad_event_gets_an_error_event_and_the_connection_closes(port, fake, data, code, words):
    events = raw(port, data)           # raw() reads until the server closes: no hang
    assert [e.type for e in events] == ["error"]
    error = Error.from_event(events[0])
    assert error.code == code and words in error.text
    assert recognitions(fake) == []
    assert Info.is_type(ask(port, Describe().event()).type)          # the server lives on


def test_an_unknown_event_is_answered_and_dropped(port):
    events = raw(port, header({"type": "run-satellite"}) + header({"type": "describe"}), then_close=True)
    assert [e.type for e in events] == ["error", "info"]
    assert Error.from_event(events[0]).code == "ProtocolError"


def test_a_client_gone_mid_event_leaves_nothing_behind(port, fake):
    assert raw(port, START + header({"type": "audio-chunk", "payload_length": 5000,
                                     "data": {"rate": 16000, "width": 2, "channels": 1}}, b"\0" * 100),
               then_close=True) == []
    assert Info.is_type(ask(port, Describe().event()).type)
    assert not [r for r in recognitions(fake) if "results" in r.json]


def test_an_idle_connection_is_closed_after_the_deadline(config, fake):
    with running(config, wy.Options(idle_timeout=0.5)) as port:
        started = time.monotonic()
        events = raw(port, b"")                                    # connects, sends nothing
        assert [Error.from_event(e).code for e in events] == ["DeadlineError"]
        assert "--idle-timeout" in Error.from_event(events[0]).text
        # A stream that stalls after its first chunk: closed too, and nothing transcribed.
        chunk = AudioChunk(rate=16000, width=2, channels=1, audio=tone(0.1)).event()
        events = raw(port, START + header({"type": chunk.type, "data": chunk.data,
                                           "payload_length": len(chunk.payload)}, chunk.payload))
        assert [Error.from_event(e).code for e in events] == ["DeadlineError"]
        assert time.monotonic() - started < WAIT
    assert not [r for r in recognitions(fake) if r.json and "results" in r.json]


def test_audio_past_max_audio_seconds_is_refused_and_closed(config, fake):
    with running(config, wy.Options(max_audio_seconds=1.0)) as port:
        result = asyncio.run(home_assistant(port, tone(1.5), "en-US"))
    error = Error.from_event(result["event"])
    assert error.code == "AudioTooLongError" and "--max-audio-seconds" in error.text


def test_zeroconf_announcement_names_the_wyoming_service():
    pytest.importorskip("zeroconf")
    info = wy.announcement("google-stt", "127.0.0.1", 10300)
    assert info.type == "_wyoming._tcp.local." and info.name == "google-stt._wyoming._tcp.local."
    assert info.port == 10300 and info.parsed_addresses() == ["127.0.0.1"]


def test_zeroconf_needs_a_tcp_uri():
    with pytest.raises(wy.ConfigError, match="tcp://"):
        wy.WyomingServer("unix:///tmp/x.sock", None, Settings.from_mapping({}, env={}), wy.Options(),
                         "google-stt")


def test_cli_refuses_a_uri_it_cannot_serve(capsys):
    from ovos_stt_plugin_google_apikey.cli import main
    assert main(["wyoming", "--uri", "stdio://"]) == 2
    assert "tcp://HOST:PORT" in capsys.readouterr().err


def test_cli_serves_without_a_key_and_says_how_to_set_one(tmp_path):
    """The real command: starts without a key, says how to set it, answers with error events."""
    import os
    env = {k: v for k, v in os.environ.items() if k not in ("GOOGLE_STT_API_KEY", "STT_PW")}
    proc = subprocess.Popen([sys.executable, "-m", "ovos_stt_plugin_google_apikey.cli", "wyoming",
                             "--uri", "tcp://127.0.0.1:0"], stderr=subprocess.PIPE, text=True, env=env)
    try:
        lines = []
        for line in proc.stderr:                      # ends when the process exits
            lines.append(line)
            found = re.search(r"serving Home Assistant on tcp://127\.0\.0\.1:(\d+)", line)
            if found:
                break
        assert found, "".join(lines)
        assert "GOOGLE_STT_API_KEY" in "".join(lines)
        port = int(found.group(1))
        assert Info.is_type(ask(port, Describe().event()).type)
        result = asyncio.run(home_assistant(port, tone(0.2), "en-US"))
        assert Error.from_event(result["event"]).code == "ConfigError"
    finally:
        proc.terminate()
        assert proc.wait(WAIT) == 0                   # SIGTERM: a clean stop
