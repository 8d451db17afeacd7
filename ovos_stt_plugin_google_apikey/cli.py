"""The ``ovos-google-stt`` command: ``serve``, ``wyoming``, ``transcribe`` and ``check``."""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import errno
import functools
import json
import logging
import os
import socket
import stat
import sys
import tempfile
from typing import Any, Dict, Iterator, List, Optional

from ovos_utils.log import LOG as OVOS_LOG

from .errors import ConfigError
from .log import ModuleLog
from .settings import KEY_ENV_VARS, Settings
from .version import __version__

LOG = ModuleLog("ovos_stt_plugin_google_apikey.cli")     # not __name__: "__main__" with -m

TOKEN_ENV = "GOOGLE_STT_SERVER_TOKEN"
# How `serve --processes N` hands its options to the worker processes uvicorn starts.
SERVE_ARGS_ENV = "OVOS_GOOGLE_STT_SERVE_ARGS"
WORKER_APP = "ovos_stt_plugin_google_apikey.cli:worker_app"
DEFAULT_PORT = 9090
MAX_TOKEN_FILE = 8192
WYOMING_URI = "tcp://127.0.0.1:10300"      # the port Wyoming STT servers use
EXIT_CONFIG = 2          # argparse's own status for a usage error


def main(argv: Optional[List[str]] = None) -> int:
    """Run a subcommand; the exit status (0 ok, 2 bad configuration or usage)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.verbose, args.command)
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"ovos-google-stt: {exc}", file=sys.stderr)
        return EXIT_CONFIG


def _log_to_stderr(level: str) -> None:
    """Our lines (OVOS's LOG) at ``level`` on stderr, where a service would print them to stdout:
    stdout carries the transcripts. Other libraries keep their own levels; their warnings
    reach stderr through a root handler."""
    OVOS_LOG.set_level(level)
    create = OVOS_LOG.create_logger

    def create_logger(name: str, tostdout: bool = True) -> logging.Logger:
        logger = create(name, tostdout)
        for handler in logger.handlers:
            if isinstance(handler, logging.StreamHandler) and handler.stream is sys.stdout:
                handler.setStream(sys.stderr)
        return logger

    OVOS_LOG.create_logger = create_logger   # this process is ours
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def build_parser() -> argparse.ArgumentParser:
    """The parser; each subcommand adds itself and sets ``func``."""
    common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS, so "-v" works before or after the subcommand without one clobbering the other.
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                        help="log at DEBUG level")
    parser = argparse.ArgumentParser(prog="ovos-google-stt", parents=[common],
                                     description="Google Cloud Speech-to-Text with an API key, "
                                                 "for OpenVoiceOS")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.set_defaults(verbose=False)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    settings = argparse.ArgumentParser(add_help=False)
    group = settings.add_argument_group(
        "plugin settings", f"read from --config, else the plugin's mycroft.conf section; the key "
                           f"from there or {' / '.join(KEY_ENV_VARS)}, never from the command line")
    group.add_argument("--config", metavar="FILE",
                       help="JSON file with the plugin's settings (or a whole mycroft.conf)")
    group.add_argument("--endpoint", help="override the 'endpoint' setting")
    group.add_argument("--model", help="override the 'model' setting")
    group.add_argument("--timeout", type=float, help="override the 'timeout' setting (seconds)")
    group.add_argument("--encoding", help="override the 'encoding' setting")
    _add_serve(commands, common, settings)
    _add_wyoming(commands, common, settings)
    _add_transcribe(commands, common, settings)
    _add_check(commands, common, settings)
    return parser


def _add_serve(commands: Any, common: argparse.ArgumentParser,
               settings: argparse.ArgumentParser) -> None:
    serve = commands.add_parser(
        "serve", parents=[common, settings], help="serve the ovos-stt-http-server routes (/stt, /lang_detect)",
        description=f"The API key is read from {' or '.join(KEY_ENV_VARS)} or the config, "
                    "never from the command line.")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    serve.add_argument("--port", type=_positive, default=os.environ.get("PORT", DEFAULT_PORT),
                       help=f"port (default: $PORT or {DEFAULT_PORT})")
    serve.add_argument("--lang", default=os.environ.get("STT_LANG") or None,
                       help="language when a request names none (default: $STT_LANG, else the "
                            "plugin's or OVOS's)")
    serve.add_argument("--token-file", help="file holding the bearer token clients must send "
                                            f"(default: ${TOKEN_ENV}; none: no token needed)")
    serve.add_argument("--processes", type=_positive, default=1,
                       help="server processes sharing the port, e.g. one per core (default: 1)")
    _add_server_options(serve)
    serve.set_defaults(func=_serve)


def _add_server_options(serve: argparse.ArgumentParser) -> None:
    """The server's limits, as ServerOptions declares them (name, default, help)."""
    try:
        from .server.options import ServerOptions
    except ImportError:                 # without the [server] extra: `serve` says what to install
        return
    for option in ServerOptions.fields():
        meta, default = option.metadata, option.default
        assert default is not dataclasses.MISSING      # every option has a default
        kind: Any = str
        if isinstance(default, float):
            kind = _seconds
        elif isinstance(default, int):
            kind = functools.partial(_bounded, low=meta["low"])
            kind.__name__ = "whole number"                 # argparse names the type in errors
        shown = "none" if default == () else _bytes(default) if meta["metavar"] == "BYTES" else default
        serve.add_argument("--" + option.name.replace("_", "-"), dest=option.name, type=kind,
                           metavar=meta["metavar"], action="append" if meta["many"] else "store",
                           default=None if meta["many"] else default,
                           help=f"{meta['help']} (default: {shown})")


def _bytes(value: int) -> str:
    return f"{value // (1024 * 1024)} MiB" if value % (1024 * 1024) == 0 else str(value)


def _add_wyoming(commands: Any, common: argparse.ArgumentParser,
                 settings: argparse.ArgumentParser) -> None:
    wyoming = commands.add_parser(
        "wyoming", parents=[common, settings], help="serve Home Assistant over the Wyoming protocol",
        description="Speech-to-text for Home Assistant's Wyoming integration, uploading while the "
                    f"audio arrives. The API key is read from {' or '.join(KEY_ENV_VARS)} or the "
                    "config, never from the command line. Needs the [wyoming] extra.")
    wyoming.add_argument("--uri", default=WYOMING_URI,
                         help=f"tcp://HOST:PORT or unix://PATH to listen on (default: {WYOMING_URI})")
    wyoming.add_argument("--lang", default=os.environ.get("STT_LANG") or None,
                         help="language when a request names none (default: $STT_LANG, else the "
                              "plugin's or OVOS's)")
    # The defaults are wyoming.Options'.
    wyoming.add_argument("--max-connections", type=_positive, default=64,
                         help="clients served at once; more get an error event (default: 64)")
    wyoming.add_argument("--idle-timeout", type=_seconds, default=30.0, metavar="SECONDS",
                         help="a client silent this long is disconnected (default: 30)")
    wyoming.add_argument("--max-audio-seconds", type=_seconds, default=120.0, metavar="SECONDS",
                         help="longest utterance; longer gets an error event (default: 120)")
    wyoming.add_argument("--zeroconf", nargs="?", const="google-stt", metavar="NAME",
                         help="announce the server over zeroconf so Home Assistant discovers it "
                              "(NAME default: google-stt)")
    wyoming.set_defaults(func=_wyoming)


def _wyoming(args: argparse.Namespace) -> int:
    import asyncio
    try:
        from . import wyoming
        if args.zeroconf:
            import zeroconf  # noqa: F401
    except ImportError as exc:
        print(f"ovos-google-stt: the Wyoming server needs its extra ({exc.name} is missing): "
              "pip install 'ovos-stt-plugin-google-apikey[wyoming]'", file=sys.stderr)
        return EXIT_CONFIG
    config = _plugin_config(args)
    options = wyoming.Options(max_connections=args.max_connections, idle_timeout=args.idle_timeout,
                              max_audio_seconds=args.max_audio_seconds)
    engine = wyoming.build_engine(config)
    try:
        server = wyoming.WyomingServer(args.uri, engine, Settings.from_mapping(config), options,
                                       args.zeroconf)
        asyncio.run(wyoming.serve(server))
    except OSError as exc:           # the port is taken, the socket path not writable
        print(f"ovos-google-stt: cannot listen on {args.uri}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    finally:
        if engine is not None:
            engine.shutdown()
    return 0


def _add_transcribe(commands: Any, common: argparse.ArgumentParser,
                    settings: argparse.ArgumentParser) -> None:
    transcribe = commands.add_parser(
        "transcribe", parents=[common, settings], help="transcribe audio files",
        description="Audio files of any length: audio over 55 s is cut at quiet points and its "
                    "parts recognised in parallel. WAV, and with the [flac] extra FLAC, Ogg, AIFF "
                    "and MP3, are read by their header. Any other file is read as raw PCM: "
                    "little-endian 16-bit mono at 16 kHz, unless --sample-rate and --sample-width "
                    "say otherwise. Phone recordings (M4A, 3GP, AMR, WebM) are refused: convert "
                    "them first, e.g. `ffmpeg -i memo.m4a -ar 16000 -ac 1 memo.wav`.")
    transcribe.add_argument("files", nargs="+", metavar="FILE")
    transcribe.add_argument("--sample-rate", type=_positive, metavar="HZ",
                            help="the rate of files read as raw PCM (default: 16000)")
    transcribe.add_argument("--sample-width", type=_positive, metavar="BYTES",
                            help="the bytes per sample of files read as raw PCM (default: 2)")
    transcribe.add_argument("--lang", help="language (e.g. en-US, pt-BR, or auto); default: the "
                                           "plugin's or OVOS's")
    transcribe.add_argument("--json", action="store_true",
                            help="print one JSON line per file: every alternative with its "
                                 "confidence, or {\"file\": ..., \"error\": ...}")
    transcribe.add_argument("--max-seconds", type=_seconds, metavar="SECONDS",
                            help="refuse a file longer than this before decoding all of it "
                                 "(default: no limit)")
    transcribe.set_defaults(func=_transcribe)


def _add_check(commands: Any, common: argparse.ArgumentParser,
               settings: argparse.ArgumentParser) -> None:
    check = commands.add_parser(
        "check", parents=[common, settings], help="prove the configured key works",
        description="Sends one tiny request (half a second of silence) and says what to fix "
                    "if Google refuses it.")
    check.add_argument("--lang", help=argparse.SUPPRESS)
    check.set_defaults(func=_check)


def _transcribe(args: argparse.Namespace) -> int:
    engine = _require_engine(_plugin_config(args))
    failed = 0
    billed: List[Optional[float]] = []
    try:
        for path in args.files:
            outcome = _transcribe_one(engine, path, args)
            if isinstance(outcome, str):                 # what went wrong, said for a file
                failed += 1
                print(outcome, file=sys.stderr)
                if args.json:         # a program reading the lines still learns of the file
                    print(json.dumps({"file": path, "error": outcome}, ensure_ascii=False))
                continue
            transcript, duration = outcome
            billed.append(transcript.billed_seconds)
            prefix = f"{path}: " if len(args.files) > 1 else ""
            if not transcript.text:           # stdout keeps its line per file; a person is told
                print(f"{prefix}(no speech heard)", file=sys.stderr)
            if args.json:
                print(json.dumps({"file": path, "language": transcript.language,
                                  "duration": round(duration, 3),
                                  "billed_seconds": transcript.billed_seconds,
                                  "alternatives": [{"text": a.text, "confidence": a.confidence}
                                                   for a in transcript.alternatives]},
                                 ensure_ascii=False))
            else:
                print(prefix + transcript.text)
    finally:
        engine.shutdown()
    if billed:     # on stderr: stdout stays the transcripts (or JSON lines) alone
        print(_billed_total(billed), file=sys.stderr)
    return 1 if failed else 0


def _transcribe_one(engine: Any, path: str, args: argparse.Namespace) -> Any:
    """(transcript, seconds of audio), or the line saying why the file failed."""
    import mimetypes

    from .decoding import decode
    from .errors import GoogleSTTError, UnsupportedAudioError
    from .refusals import explain

    def progress(done: int, total: int) -> None:
        if total > 1:
            print(f"{path}: part {done} of {total} done", file=sys.stderr)
    try:
        with open(path, "rb") as f:
            data = f.read()
        # The name's type stands in for a Content-Type: README.md is text, memo.m4a not PCM.
        pcm = decode(data, content_type=mimetypes.guess_type(path)[0], sample_rate=args.sample_rate,
                     sample_width=args.sample_width, max_seconds=args.max_seconds)
        return engine.recognize(pcm, args.lang, progress=progress), pcm.duration
    except UnsupportedAudioError as exc:
        return explain(exc, path)
    except OSError as exc:
        return f"{path}: {exc.strerror or exc}"
    except GoogleSTTError as exc:
        return f"{path}: {exc}"


def _billed_total(billed: List[Optional[float]]) -> str:
    known = [seconds for seconds in billed if seconds is not None]
    files = f"{len(billed)} file{'s' if len(billed) != 1 else ''}"
    if len(known) < len(billed):
        return f"Google billed {sum(known):g} s for {files} ({len(billed) - len(known)} without " \
               "a billed time in Google's answer)"
    return f"Google billed {sum(known):g} s for {files}"


def _check(args: argparse.Namespace) -> int:
    import time

    from .errors import APIError, UnavailableError
    engine = _require_engine(_plugin_config(args))
    started = time.monotonic()
    try:
        engine.recognize(bytes(16000), args.lang)          # 0.5 s of 16 kHz silence
    except UnavailableError as exc:
        print(f"FAILED: {exc}\nCheck the network, a proxy (HTTPS_PROXY) or 'endpoint' "
              f"({engine.settings.endpoint_shown}).", file=sys.stderr)
        return 1
    except APIError as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    finally:
        engine.shutdown()
    print(f"OK: Google Speech-to-Text accepted the key ({engine.settings.endpoint_shown}, "
          f"language {engine.google_language(args.lang)}, "
          f"{(time.monotonic() - started) * 1000:.0f} ms)")
    return 0


def _require_engine(config: Dict[str, Any]) -> Any:
    """The engine for a one-shot command; ConfigError (not the server's warning) without a key."""
    if not Settings.from_mapping(config).has_key:
        raise ConfigError(f"no Google API key: set the environment variable {KEY_ENV_VARS[0]} "
                          "or 'key' in the plugin's config")
    from .plugin import GoogleAPIKeySTT
    return GoogleAPIKeySTT(config)


def _serve(args: argparse.Namespace) -> int:
    try:
        from . import server
    except ImportError as exc:
        print(f"ovos-google-stt: the server needs its extra ({exc.name} is missing): "
              "pip install 'ovos-stt-plugin-google-apikey[server]'", file=sys.stderr)
        return EXIT_CONFIG
    _check_port_free(args.host, args.port)     # before the engine, the app and "serving on"
    options = _server_options(args)            # the token read here, once
    app, engine = _serve_app(args, options)    # also with --processes: a bad setting stops here
    if args.processes > 1:
        if engine is not None:
            engine.shutdown()
        # Each worker process builds its own engine and app from the same settings and the
        # same ServerOptions (token included: a worker never reads the token file); the key
        # comes from the environment or the config file, as here.
        os.environ[SERVE_ARGS_ENV] = json.dumps({
            "args": {k: v for k, v in vars(args).items() if k != "func"},
            "options": options.to_json()})
        with _metrics_dir():
            server.run_processes(WORKER_APP, args.processes, args.host, args.port, options)
        return 0
    # uvicorn's own start-up lines are INFO, below the level its loggers keep here.
    LOG.info("serving on http://%s:%d (Ctrl+C to stop)", args.host, args.port)
    try:
        server.run(app, args.host, args.port)
    finally:
        if engine is not None:
            engine.shutdown()
    return 0


def _check_port_free(host: str, port: int) -> None:
    """ConfigError when nothing can listen on host:port (uvicorn would say so later, in its own
    format, after our "serving on" line). Bound as uvicorn binds: SO_REUSEADDR, so a port left
    in TIME_WAIT counts as free and one with a listener does not."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError as exc:
        why = "the port is in use (is another server running?)" \
            if exc.errno == errno.EADDRINUSE else exc.strerror or str(exc)
        raise ConfigError(f"cannot listen on {host}:{port}: {why}; choose another with --port "
                          "or --host") from exc


@contextlib.contextmanager
def _metrics_dir() -> Iterator[None]:
    """With several processes, /metrics sums them all: prometheus_client's multiprocess mode,
    in the operator's PROMETHEUS_MULTIPROC_DIR or else a fresh directory removed at exit."""
    from .server.metrics import MULTIPROC_ENV
    if os.environ.get(MULTIPROC_ENV):
        yield
        return
    with tempfile.TemporaryDirectory(prefix="ovos-google-stt-metrics-") as path:
        os.environ[MULTIPROC_ENV] = path
        try:
            yield
        finally:
            del os.environ[MULTIPROC_ENV]


def worker_app() -> Any:
    """The app of one `serve --processes N` worker (uvicorn calls this in each process)."""
    from .server import ServerOptions, serving
    given = json.loads(os.environ[SERVE_ARGS_ENV])
    args = argparse.Namespace(**given["args"])
    _setup_logging(args.verbose)
    serving.ignore_sighup()      # the supervisor handles it: a hung-up terminal signals us all
    app = _serve_app(args, ServerOptions.from_json(given["options"]))[0]
    serving.listen_on(app, args.host)
    return app


def _setup_logging(verbose: bool, command: str = "serve") -> None:
    # The server logs a line per request at INFO; the one-shot commands print their result and
    # keep retries and such to -v.
    _log_to_stderr("DEBUG" if verbose else "INFO" if command in ("serve", "wyoming") else "WARNING")


def _server_options(args: argparse.Namespace) -> Any:
    """ServerOptions from the serve flags, the token from --token-file or the environment.
    Raises ConfigError."""
    from .server import ServerOptions
    given = {f.name: getattr(args, f.name) for f in ServerOptions.fields()}
    given = {k: tuple(v) if isinstance(v, list) else () if v is None else v for k, v in given.items()}
    try:
        return ServerOptions(token=_token(args.token_file), default_lang=args.lang, **given)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc


def _serve_app(args: argparse.Namespace, options: Any) -> Any:
    """(app, engine) for the settings and ``options``; engine is None without a key. Raises
    ConfigError."""
    from . import server
    engine = _engine(_plugin_config(args))
    try:
        app = server.create_app(engine, options)
    except ValueError as exc:
        if engine is not None:
            engine.shutdown()
        raise ConfigError(str(exc)) from exc
    return app, engine


def _plugin_config(args: argparse.Namespace) -> Dict[str, Any]:
    """The plugin's settings: --config or mycroft.conf, then the command-line overrides."""
    if args.config:
        config = _read_json(args.config)
    else:
        from .plugin import ovos_section
        config = ovos_section()
    overrides = {"endpoint": args.endpoint, "model": args.model, "timeout": args.timeout,
                 "encoding": args.encoding}
    lang = getattr(args, "lang", None)
    if lang and lang != "auto":       # "auto" is a per-request choice, not a default language
        overrides["lang"] = lang
    config.update({name: value for name, value in overrides.items() if value is not None})
    return config


def _read_json(path: str) -> Dict[str, Any]:
    """A settings section, or a whole mycroft.conf holding one. Raises ConfigError."""
    from .settings import PLUGIN_ID
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read --config {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"--config {path} must hold a JSON object of the plugin's settings")
    section = data.get("stt", {}).get(PLUGIN_ID) if isinstance(data.get("stt"), dict) else None
    return dict(section) if isinstance(section, dict) else data


def _token(path: Optional[str]) -> Optional[str]:
    """The bearer token from --token-file or the environment; None when neither is set.
    Raises ConfigError for a file that is not a regular one (a FIFO would hang start-up), is
    empty, or holds anything but one line of printable ASCII."""
    if path is None:
        token = os.environ.get(TOKEN_ENV, "").strip()
        where = f"${TOKEN_ENV}"
        if not token:
            return None
    else:
        where = f"--token-file {path}"
        token = _read_token_file(path)
    from .server.options import check_token
    try:
        return check_token(token)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _read_token_file(path: str) -> str:
    try:
        # O_NONBLOCK: opening a FIFO with no writer must not wait for one
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise ConfigError(f"--token-file {path} is not a regular file")
            data = f.read(MAX_TOKEN_FILE + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read --token-file {path}: {exc}") from exc
    if len(data) > MAX_TOKEN_FILE:
        raise ConfigError(f"--token-file {path} is larger than {MAX_TOKEN_FILE} bytes: not a token")
    text = data.decode("ascii", "replace")
    if text.endswith("\n"):            # one line, its end as editors write it
        text = text[:-2] if text.endswith("\r\n") else text[:-1]
    if not text.strip():
        raise ConfigError(f"--token-file {path} is empty")
    return text


def _engine(config: Dict[str, Any]) -> Any:
    """The engine, or None (the server answers 503) when no key is configured.

    Raises ConfigError for any other bad setting.
    """
    if not Settings.from_mapping(config).has_key:
        LOG.error("no Google API key: set the environment variable %s (or 'key' in the plugin's "
                  "config); until then /stt answers 503", KEY_ENV_VARS[0])
        return None
    from .plugin import GoogleAPIKeySTT
    return GoogleAPIKeySTT(config)


def _positive(text: str) -> int:
    return _bounded(text, 1)


def _natural(text: str) -> int:
    return _bounded(text, 0)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds; got {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be over 0 seconds; got {text!r}")
    return value


def _bounded(text: Any, low: int) -> int:
    try:
        value = int(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"must be a whole number; got {text!r}") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"must be at least {low}; got {value}")
    return value

if __name__ == "__main__":
    sys.exit(main())
