"""The OVOS STT plugin: Google Cloud Speech-to-Text v1 over REST with an API key."""
from __future__ import annotations

import inspect
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional, Set, Tuple

from ovos_plugin_manager.templates.stt import STT
from ovos_utils import classproperty

from . import audio as audio_mod
from . import decoding
from .errors import ConfigError
from .languages import standard_languages
from .recognizer import AUTO, Progress, Recognizer
from .settings import KEY_ENV_VARS, OVOS_MERGED_KEYS, PLUGIN_ID, Settings
from .wire import Transcript


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


def ovos_section(*plugin_ids: str) -> Dict[str, Any]:
    """The first of these sections of mycroft.conf that exists (OPM 2.x no longer passes the
    plugin's section in by itself), with OVOS's language."""
    from ovos_config import Configuration
    conf = Configuration()
    stt = conf.get("stt", {})
    section = dict(next((stt[pid] for pid in plugin_ids or (PLUGIN_ID,) if stt.get(pid)), {}))
    section.setdefault("lang", stt.get("lang") or conf.get("lang"))
    return section


def _with_shared_section(config: Dict[str, Any], plugin_ids: Tuple[str, ...]) -> Dict[str, Any]:
    """``config`` as OVOS or a caller built it for ``plugin_ids[0]``, completed from the section
    it shares (the next of ``plugin_ids`` that has one), wherever that section is: nested in
    ``config`` itself, in the dict OVOS's factory was given, or in mycroft.conf. Its values win
    over OVOS's defaults (``module``, ``lang``, ...), and the plugin's own keys over it."""
    if len(plugin_ids) < 2:
        return config
    own = {k: v for k, v in config.items() if k not in plugin_ids}
    nested = _shared(config, plugin_ids[1:])
    if nested:
        return {**own, **nested, **{k: v for k, v in own.items() if k not in OVOS_MERGED_KEYS}}
    if config.get("module") != plugin_ids[0]:
        return config
    for stt in _stt_sections():
        if any(k not in OVOS_MERGED_KEYS for k in stt.get(plugin_ids[0]) or {}):
            return config                       # its own section: OVOS gave it to us
        shared = _shared(stt, plugin_ids[1:])
        if shared:
            return {**config, **shared}
    return config


def _stt_sections() -> Iterator[Mapping[str, Any]]:
    """Where the shared section may be: the dict OVOS's factory was given, then mycroft.conf."""
    given = _factory_config()
    if given is not None:
        yield given["stt"] if isinstance(given.get("stt"), dict) else given
    from ovos_config import Configuration
    yield Configuration().get("stt", {})


def _shared(section: Mapping[str, Any], plugin_ids: Tuple[str, ...]) -> Dict[str, Any]:
    return dict(next((section[pid] for pid in plugin_ids if isinstance(section.get(pid), dict)
                      and section[pid]), {}))


def _factory_config() -> Optional[Dict[str, Any]]:
    """The dict OVOSSTTFactory.create was given, when it is the caller building this plugin.

    OPM hands a plugin only ``stt.<its module>`` of that dict and drops every other section (its
    dict values), the shared one among them; this is the only way to see it. None when the
    factory read mycroft.conf itself (no dict) or is not the caller.
    """
    try:
        from ovos_plugin_manager.stt import OVOSSTTFactory
    except ImportError:
        return None
    code = getattr(OVOSSTTFactory.create, "__code__", None)
    frame = inspect.currentframe()
    try:
        for _ in range(12):              # the factory, then our classes' __init__ chain
            if frame is None:
                return None
            if frame.f_code is code:
                given = frame.f_locals.get("config")
                return given if isinstance(given, dict) else None
            frame = frame.f_back
        return None
    finally:
        del frame                         # no reference cycle through the frames


class GoogleAPIKeySTT(STT):
    """Transcribes through speech:recognize. See README for the settings.

    ``recognize``/``transcribe``/``execute``/``detect_language`` raise AudioError, ConfigError
    or an APIError subclass (see ``errors``); no speech is ``[]`` / ``""``, never an error.
    """

    config_sections: Tuple[str, ...] = (PLUGIN_ID,)   # where to look in mycroft.conf

    def __init__(self, config: Optional[Dict[str, Any]] = None) -> None:
        if config is None:
            config = ovos_section(*self.config_sections)
        else:
            config = _with_shared_section(config, self.config_sections)
        super().__init__(config)
        self.settings = Settings.from_mapping(self.config)
        if not self.settings.has_key:
            raise ConfigError(
                f"no Google API key: set 'key' in the '{PLUGIN_ID}' section of mycroft.conf "
                f"or the environment variable {KEY_ENV_VARS[0]}")
        self.recognizer = Recognizer(self.settings, default_language=self._ovos_language())

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.settings!r})"

    @classproperty
    def available_languages(cls) -> Set[str]:
        """Standard tags (he-IL, zh-CN, nb-NO), as OVOS and Home Assistant match them; Google's
        own forms (iw-IL, cmn-Hans-CN) are accepted as input too."""
        return set(standard_languages())

    def recognize(self, audio: Any, lang: Optional[str] = None,
                  progress: Optional[Progress] = None) -> Transcript:
        """Recognise audio of any length; ``lang`` "auto" picks from ``auto_languages``."""
        pcm = audio_mod.to_linear16(decoding.from_audio(audio))
        return self.recognizer.recognize(pcm, lang, progress)

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
        pcm = audio_mod.to_linear16(decoding.from_audio(audio))
        return self.recognizer.detect_language(pcm, valid_langs)

    def google_languages(self, lang: Optional[str] = None) -> List[str]:
        """Google tags to try, the preferred first: ``lang``, or for "auto" ``auto_languages``."""
        return self.recognizer.languages_for(lang)

    def google_language(self, lang: Optional[str] = None) -> str:
        """The Google tag for ``lang`` (or the configured/OVOS language; the first candidate
        for "auto")."""
        return self.recognizer.languages_for(lang)[0]

    def _ovos_language(self) -> Optional[str]:
        """OVOS's own language: the listener's, else mycroft.conf's (when 'lang' is "auto")."""
        lang = self.lang
        if not lang or lang.lower() == AUTO:
            from ovos_config import Configuration
            lang = Configuration().get("lang")
        return lang

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
    for tag in sorted(standard_languages()):
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
