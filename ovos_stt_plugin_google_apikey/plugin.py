"""The OVOS STT plugin: Google Cloud Speech-to-Text v1 over REST with an API key."""
from __future__ import annotations

from typing import Any, Dict, Iterable, List, Optional, Set, Tuple

from ovos_plugin_manager.templates.stt import STT
from ovos_utils import classproperty

from . import audio as audio_mod
from . import decoding
from .errors import ConfigError
from .languages import google_languages, to_google
from .recognizer import CHUNK_SECONDS, Progress, Recognizer
from .settings import KEY_ENV_VARS, Settings
from .wire import Transcript

PLUGIN_ID = "ovos-stt-plugin-google-apikey"


def _quiet_second_registration(*plugin_ids: str) -> None:
    """Keep OPM 2.x from warning that we are also registered under 'mycroft.plugin.stt'.

    The old group is on purpose: OPM 0.x (the released ovos-stt-server launcher) reads only
    it. OPM 2.x scans 'opm.stt' first (importing this module), then the old group, warning
    once per name it has not warned about; marking our names as warned keeps it quiet.
    """
    try:
        from ovos_plugin_manager.utils import _iter_entrypoints
    except ImportError:                       # OPM 0.x/1.x: no such warning exists
        return
    warned = getattr(_iter_entrypoints, "_warnings", None)
    if isinstance(warned, list):
        warned.extend(pid for pid in plugin_ids if pid not in warned)


_quiet_second_registration(PLUGIN_ID, PLUGIN_ID + "-streaming")


def _ovos_section(*plugin_ids: str) -> Dict[str, Any]:
    """The first of these sections of mycroft.conf that exists (OPM 2.x no longer passes the
    plugin's section in by itself)."""
    from ovos_config import Configuration
    conf = Configuration()
    stt = conf.get("stt", {})
    section = dict(next((stt[pid] for pid in plugin_ids or (PLUGIN_ID,) if stt.get(pid)), {}))
    section.setdefault("lang", stt.get("lang") or conf.get("lang"))
    return section


def _with_shared_section(config: Dict[str, Any], plugin_ids: Tuple[str, ...]) -> Dict[str, Any]:
    """``config`` as OVOS built it for ``plugin_ids[0]``, completed from the section it shares.

    OVOS's factory (as module, or as the listener's fallback) hands a plugin ``stt.<its id>``
    plus OVOS's defaults (``module``, ``lang``, ...). When mycroft.conf has no such section, the
    settings are in the next of ``plugin_ids`` that has one; its values win over the defaults.
    """
    if len(plugin_ids) < 2 or config.get("module") != plugin_ids[0]:
        return config
    from ovos_config import Configuration
    stt = Configuration().get("stt", {})
    if stt.get(plugin_ids[0]):
        return config
    shared = next((stt[pid] for pid in plugin_ids[1:] if stt.get(pid)), {})
    return {**config, **shared}


class GoogleAPIKeySTT(STT):
    """Transcribes through speech:recognize. See README for the settings.

    ``recognize``/``transcribe``/``execute``/``detect_language`` raise AudioError, ConfigError
    or an APIError subclass (see ``errors``); no speech is ``[]`` / ``""``, never an error.
    """

    config_sections: Tuple[str, ...] = (PLUGIN_ID,)   # where to look in mycroft.conf

    def __init__(self, config: Optional[Dict[str, Any]] = None) -> None:
        if config is None:
            config = _ovos_section(*self.config_sections)
        else:
            config = _with_shared_section(config, self.config_sections)
        super().__init__(config)
        self.settings = Settings.from_mapping(self.config)
        if not self.settings.has_key:
            raise ConfigError(
                f"no Google API key: set 'key' in the '{PLUGIN_ID}' section of mycroft.conf "
                f"or the environment variable {KEY_ENV_VARS[0]}")
        self.recognizer = Recognizer(self.settings)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.settings!r})"

    @classproperty
    def available_languages(cls) -> Set[str]:
        return set(google_languages())

    def recognize(self, audio: Any, lang: Optional[str] = None,
                  progress: Optional[Progress] = None) -> Transcript:
        """Recognise audio of any length; ``lang`` "auto" picks from ``auto_languages``."""
        pcm = audio_mod.to_linear16(decoding.from_audio(audio))
        return self.recognizer.recognize(pcm, self.google_languages(lang), progress)

    def transcribe(self, audio: Any, lang: Optional[str] = None) -> List[Tuple[str, float]]:
        """Every alternative as (text, confidence) in Google's order; [] when no speech."""
        return as_tuples(self.recognize(audio, lang))

    def execute(self, audio: Any, language: Optional[str] = None) -> str:
        """The best transcript, or "" when no speech was heard."""
        return self.recognize(audio, language).text

    def detect_language(self, audio: Any,
                        valid_langs: Optional[Iterable[str]] = None) -> Tuple[str, float]:
        """The candidate Google hears best, as (tag as given, transcript confidence).

        Candidates: ``valid_langs``, else ``auto_languages``. Google reports no language
        confidence; the transcript's is used (0.5 when Google gives none, 0.0 for no speech).
        """
        if isinstance(valid_langs, str):         # one tag, not its letters
            valid_langs = [valid_langs]
        try:
            candidates = list(valid_langs or self.settings.auto_languages)
        except TypeError:
            candidates = [valid_langs]
        if any(not isinstance(tag, str) or not tag for tag in candidates):
            raise ConfigError(f"candidate languages must be tags such as en-US; got "
                              f"{valid_langs!r:.200}")
        given = list(dict.fromkeys(candidates))
        if not given:
            raise ConfigError("no candidate languages: pass valid_langs or set 'auto_languages'")
        if len(given) == 1:
            return given[0], 1.0
        by_google = {to_google(tag): tag for tag in given}
        pcm = audio_mod.to_linear16(decoding.from_audio(audio))
        piece = audio_mod.split(pcm, CHUNK_SECONDS)[0]
        transcript = self.recognizer.recognize_languages(piece, list(by_google))
        if not transcript.alternatives:
            return given[0], 0.0
        confidence = transcript.alternatives[0].confidence
        return by_google.get(transcript.language or "", given[0]), 0.5 if confidence is None else confidence

    def google_languages(self, lang: Optional[str] = None) -> List[str]:
        """Google tags to try, the preferred first: ``lang``, or for "auto" ``auto_languages``."""
        if lang == "auto" and self.settings.auto_languages:
            return list(dict.fromkeys(to_google(tag) for tag in self.settings.auto_languages))
        return [self.google_language(lang)]

    def google_language(self, lang: Optional[str] = None) -> str:
        """The Google tag for ``lang`` (or the configured/OVOS language)."""
        if lang is not None and not isinstance(lang, str):
            raise ConfigError(f"the language must be a tag such as en-US; got {lang!r:.100}")
        if not lang or lang == "auto":
            lang = self.settings.lang or self.lang
        return to_google(lang)

    def shutdown(self) -> None:
        self.recognizer.close()


def as_tuples(transcript: Transcript) -> List[Tuple[str, float]]:
    """OVOS's (text, confidence) list. Google gives no confidence for lower-ranked guesses:
    the top one then takes OVOS's own convention (1.0, as STT.transcribe does), and a lower
    one the confidence above it, so it never outranks it."""
    result: List[Tuple[str, float]] = []
    for alt in transcript.alternatives:
        if alt.confidence is not None:
            confidence = alt.confidence
        else:
            confidence = result[-1][1] if result else 1.0
        result.append((alt.text, confidence))
    return result


def _config_examples() -> Dict[str, List[Dict[str, Any]]]:
    examples: Dict[str, List[Dict[str, Any]]] = {}
    for tag in sorted(google_languages()):
        examples[tag] = [{
            "lang": tag,
            "meta": {
                "display_name": f"Google Cloud Speech-to-Text ({tag})",
                "offline": False,
                "priority": 60,
                "extra_setup": {
                    "optional": False,
                    "description": "needs a Google Cloud API key with the Speech-to-Text API "
                                   "enabled: set 'key' or GOOGLE_STT_API_KEY",
                },
            },
        }]
    return examples


GoogleAPIKeySTTConfig = _config_examples()
