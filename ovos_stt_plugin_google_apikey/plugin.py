"""The OVOS STT plugin: Google Cloud Speech-to-Text v1 over REST with an API key."""
from __future__ import annotations

import threading
import time
from typing import Any, Dict, List, Optional, Set, Tuple

from ovos_plugin_manager.templates.stt import STT
from ovos_utils import classproperty
from ovos_utils.log import LOG

from . import audio as audio_mod
from .client import SpeechClient
from .errors import AudioError, ConfigError, ModelNotSupportedError
from .languages import google_languages, to_google
from .settings import KEY_ENV_VARS, Settings
from .wire import MAX_REQUEST_BYTES, MAX_SYNC_SECONDS, Transcript, build_recognize_body, parse_response

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


_quiet_second_registration(PLUGIN_ID)


def _ovos_section() -> Dict[str, Any]:
    """This plugin's section of mycroft.conf (OPM 2.x no longer passes it in by itself)."""
    from ovos_config import Configuration
    conf = Configuration()
    section = dict(conf.get("stt", {}).get(PLUGIN_ID) or {})
    section.setdefault("lang", conf.get("stt", {}).get("lang") or conf.get("lang"))
    return section


class GoogleAPIKeySTT(STT):
    """Transcribes through speech:recognize. See README for the settings.

    ``transcribe``/``execute``/``recognize`` raise ConfigError, AudioError or an APIError
    subclass (see ``errors``); no speech is ``[]`` / ``""``, never an error.
    """

    def __init__(self, config: Optional[Dict[str, Any]] = None) -> None:
        if config is None:
            config = _ovos_section()
        super().__init__(config)
        self.settings = Settings.from_mapping(self.config)
        if not self.settings.has_key:
            raise ConfigError(
                f"no Google API key: set 'key' in the '{PLUGIN_ID}' section of mycroft.conf "
                f"or the environment variable {KEY_ENV_VARS[0]}")
        self.client = SpeechClient(self.settings)
        self._no_model_langs: Set[str] = set()   # languages the configured model refused
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.settings!r})"

    @classproperty
    def available_languages(cls) -> Set[str]:
        return set(google_languages())

    def recognize(self, audio: Any, lang: Optional[str] = None) -> Transcript:
        """Recognise one utterance (at most Google's 60 s); the typed result."""
        pcm = audio_mod.to_linear16(audio_mod.from_audio(audio))
        if pcm.duration > MAX_SYNC_SECONDS:
            raise AudioError(f"the audio is {pcm.duration:.1f} s long; Google's synchronous "
                             f"recognition takes at most {MAX_SYNC_SECONDS:g} s")
        language = self.google_language(lang)
        deadline = time.monotonic() + self.settings.timeout
        model = None if language in self._no_model_langs else self.settings.model
        body = build_recognize_body(self.settings, pcm, language, model=model)
        _check_size(body)
        try:
            answer = self.client.recognize(body, deadline)
        except ModelNotSupportedError:
            if not model:
                raise
            LOG.warning("Google's model %s does not support %s; using Google's default model "
                        "for it from now on", model, language)
            with self._lock:
                self._no_model_langs.add(language)
            body["config"].pop("model")
            answer = self.client.recognize(body, deadline)
        return parse_response(answer)

    def transcribe(self, audio: Any, lang: Optional[str] = None) -> List[Tuple[str, float]]:
        """Every alternative as (text, confidence) in Google's order; [] when no speech."""
        transcript = self.recognize(audio, lang)
        result: List[Tuple[str, float]] = []
        for alt in transcript.alternatives:
            if alt.confidence is not None:
                confidence = alt.confidence
            else:
                # Unknown: OVOS's own convention (STT.transcribe) is 1.0 for the answer; a
                # lower-ranked guess must not outrank the one above it.
                confidence = result[-1][1] if result else 1.0
            result.append((alt.text, confidence))
        return result

    def execute(self, audio: Any, language: Optional[str] = None) -> str:
        """The best transcript, or "" when no speech was heard."""
        return self.recognize(audio, language).text

    def google_language(self, lang: Optional[str] = None) -> str:
        """The Google tag for ``lang`` (or the configured/OVOS language)."""
        if not lang or lang == "auto":
            lang = self.settings.lang or self.lang
        return to_google(lang)

    def shutdown(self) -> None:
        self.client.close()


def _check_size(body: Dict[str, Any]) -> None:
    size = len(body["audio"]["content"]) + 1024
    if size > MAX_REQUEST_BYTES:
        raise AudioError(f"the request would be {size} bytes; Google accepts at most "
                         f"{MAX_REQUEST_BYTES} bytes per request")


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
