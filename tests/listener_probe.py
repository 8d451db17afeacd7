"""Load the STT plugins from mycroft.conf the way ovos-dinkum-listener does and speak to them as
its voice loop does; one JSON line per utterance. Run in a fresh process (its own XDG config).

    python listener_probe.py SECONDS [SECONDS ...] [--replica]

Without ``--replica`` the listener's own ``load_stt_module`` / ``load_fallback_stt`` are used (a
one-shot plugin comes back wrapped in its FakeStreamingSTT). ovos-dinkum-listener needs
ovos-plugin-manager >= 1.0.2, so with 0.9 ``--replica`` makes the same two factory calls, copied
from ovos-dinkum-listener 0.5.0 ``plugins.py``, and hands a one-shot plugin the audio itself.
"""
import json
import math
import struct
import sys

RATE = 16000
CHUNK = 3200            # 0.1 s, the listener's usual chunk


def tone(seconds):
    return b"".join(struct.pack("<h", int(12000 * math.sin(i / 4))) for i in range(int(seconds * RATE)))


if "--replica" in sys.argv:
    from ovos_config import Configuration
    from ovos_plugin_manager.stt import OVOSSTTFactory

    def load_stt_module():
        stt_config = dict(Configuration().get("stt", {}))
        stt_config.setdefault("lang", Configuration().get("lang"))
        return OVOSSTTFactory.create(stt_config)

    def load_fallback_stt():
        cfg = Configuration().get("stt", {})
        fbm = cfg.get("fallback_module")
        if not fbm:
            return None
        config = cfg.get(fbm, {})
        config.setdefault("lang", Configuration().get("lang"))
        return OVOSSTTFactory.create({"module": fbm, fbm: config})
else:
    from ovos_dinkum_listener.plugins import load_fallback_stt, load_stt_module


def streams(engine):
    return engine is not None and hasattr(engine, "stream_start")


def settle(engine):
    """The listener feeds in real time, so its stream threads keep up; here wait until they did."""
    if streams(engine) and getattr(engine, "queue", None) is not None:
        engine.queue.join()


def transcribe(engine, pcm, lang):
    if streams(engine):
        return engine.transcribe(lang=lang) or []
    return engine.transcribe(pcm, lang) or []


def main():
    lang = "en-US"
    stt, fallback = load_stt_module(), load_fallback_stt()
    print("LOADED", json.dumps([type(stt).__name__, type(fallback).__name__ if fallback else None,
                                type(getattr(stt, "engine", stt)).__name__,
                                type(getattr(fallback, "engine", fallback)).__name__,
                                getattr(fallback, "is_fallback", None)]), flush=True)
    for seconds in [float(a) for a in sys.argv[1:] if not a.startswith("--")]:
        pcm = tone(seconds)
        for engine in (stt, fallback):                 # the voice loop: both streams start
            if streams(engine):
                engine.stream_start()
        for i in range(0, len(pcm), CHUNK):            # ... and both are fed every chunk
            for engine in (stt, fallback):
                if streams(engine):
                    engine.stream_data(pcm[i:i + CHUNK])
        settle(stt)
        settle(fallback)
        by, error = "primary", None
        try:
            utterances = transcribe(stt, pcm, lang)
        except Exception as exc:                       # the voice loop logs it and falls back
            utterances, error = [], type(exc).__name__
        if not utterances and fallback is not None:
            by, utterances = "fallback", transcribe(fallback, pcm, lang)
        print("UTTERANCE", json.dumps({"seconds": seconds, "by": by, "error": error,
                                       "text": utterances[0][0] if utterances else None}), flush=True)
    for engine in (stt, fallback):                     # the next wake word ...
        if streams(engine):
            engine.stream_start()
    for engine in (stt, fallback):                     # ... then silence, and the service stops
        if streams(engine):
            engine.stream_stop()
    for engine in (stt, fallback):
        if engine is not None and hasattr(getattr(engine, "engine", engine), "shutdown"):
            getattr(engine, "engine", engine).shutdown()
    print("DONE", flush=True)


if __name__ == "__main__":
    main()
