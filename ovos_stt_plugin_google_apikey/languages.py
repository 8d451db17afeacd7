"""Google Speech-to-Text v1 language tags, standard (BCP-47) tags for them, and OVOS tags mapped onto them."""
from __future__ import annotations

from functools import lru_cache
from importlib import resources
from typing import Dict, FrozenSet

# OVOS / BCP-47 tags that Google lists under another name (Google keeps legacy and
# script-qualified forms: Hebrew is still "iw", Mandarin is "cmn-Hans-CN").
ALIASES: Dict[str, str] = {
    "zh": "cmn-Hans-CN",
    "zh-cn": "cmn-Hans-CN",
    "zh-hans": "cmn-Hans-CN",
    "zh-hans-cn": "cmn-Hans-CN",
    "zh-sg": "cmn-Hans-CN",
    "zh-tw": "cmn-Hant-TW",
    "zh-hant": "cmn-Hant-TW",
    "zh-hant-tw": "cmn-Hant-TW",
    "zh-hk": "yue-Hant-HK",
    "zh-hans-hk": "cmn-Hans-HK",
    "zh-hant-hk": "yue-Hant-HK",
    "yue": "yue-Hant-HK",
    "yue-hk": "yue-Hant-HK",
    "cmn": "cmn-Hans-CN",
    "he": "iw-IL",
    "he-il": "iw-IL",
    "iw": "iw-IL",
    "nb": "no-NO",
    "nb-no": "no-NO",
    "nn": "no-NO",
    "nn-no": "no-NO",
    "no": "no-NO",
    "pa": "pa-Guru-IN",
    "pa-in": "pa-Guru-IN",
    "tl": "fil-PH",
    "tl-ph": "fil-PH",
    "fil": "fil-PH",
}

# Google's legacy or script-qualified tags, and the standard tag for each: what OVOS,
# Home Assistant (which matches on equal language subtags) and users know them by. Cantonese is
# zh-HK, as in Home Assistant's Google integration; Mandarin in Hong Kong keeps its script.
STANDARD: Dict[str, str] = {
    "iw-IL": "he-IL",
    "cmn-Hans-CN": "zh-CN",
    "cmn-Hant-TW": "zh-TW",
    "cmn-Hans-HK": "zh-Hans-HK",
    "yue-Hant-HK": "zh-HK",
    "no-NO": "nb-NO",
    "pa-Guru-IN": "pa-IN",
}

# For a bare language, the region Google users most likely mean when "xx-XX" is not listed.
DEFAULT_REGIONS: Dict[str, str] = {
    "en": "en-US", "ar": "ar-SA", "bn": "bn-IN", "ta": "ta-IN", "ur": "ur-PK", "sw": "sw-KE",
    "ja": "ja-JP", "ko": "ko-KR", "el": "el-GR", "da": "da-DK", "cs": "cs-CZ", "sv": "sv-SE",
    "uk": "uk-UA", "vi": "vi-VN", "ca": "ca-ES", "eu": "eu-ES", "gl": "gl-ES", "fa": "fa-IR",
    "hi": "hi-IN", "af": "af-ZA", "zu": "zu-ZA", "am": "am-ET", "hy": "hy-AM", "ka": "ka-GE",
    "kk": "kk-KZ", "km": "km-KH", "lo": "lo-LA", "ne": "ne-NP", "si": "si-LK", "sq": "sq-AL",
    "sr": "sr-RS", "sl": "sl-SI", "et": "et-EE", "jv": "jv-ID", "su": "su-ID", "ms": "ms-MY",
    "my": "my-MM", "bs": "bs-BA", "mn": "mn-MN", "uz": "uz-UZ", "az": "az-AZ", "gu": "gu-IN",
    "kn": "kn-IN", "ml": "ml-IN", "mr": "mr-IN", "te": "te-IN",
}


@lru_cache(maxsize=1)
def google_languages() -> FrozenSet[str]:
    """Every tag Google lists for Speech-to-Text v1 (shipped as package data)."""
    text = resources.files(__package__).joinpath("data/languages.txt").read_text("utf-8")
    return frozenset(line.strip() for line in text.splitlines() if line.strip())


@lru_cache(maxsize=1)
def standard_languages() -> FrozenSet[str]:
    """Every language Google lists, as a standard tag (``he-IL``, ``zh-CN``, ``nb-NO``)."""
    return frozenset(to_standard(tag) for tag in google_languages())


def to_standard(google_tag: str) -> str:
    """The standard tag for one of Google's (``iw-IL`` -> ``he-IL``); others unchanged."""
    return STANDARD.get(google_tag, google_tag)


@lru_cache(maxsize=1)
def _by_lower() -> Dict[str, str]:
    return {tag.lower(): tag for tag in google_languages()}


@lru_cache(maxsize=512)
def to_google(tag: str) -> str:
    """Map an OVOS language tag (``en-us``, ``zh-CN``, ``he``, ``pt_BR``) to Google's form.

    A tag Google does not list is passed on in canonical case, so a newly added Google
    language still works; Google answers an unknown one with "bad language code".
    """
    key = tag.strip().replace("_", "-").lower()
    known = _by_lower()
    if key in known:
        return known[key]
    if key in ALIASES:
        return ALIASES[key]
    if "-" not in key:
        guess = DEFAULT_REGIONS.get(key, f"{key}-{key.upper()}")
        if guess.lower() in known:
            return known[guess.lower()]
        regional = sorted(t for t in google_languages() if t.lower().startswith(key + "-"))
        if regional:
            return regional[0]
    return _canonical_case(key)


def _canonical_case(key: str) -> str:
    parts = key.split("-")
    out = [parts[0]]
    for part in parts[1:]:
        out.append(part.title() if len(part) == 4 else part.upper() if len(part) == 2 else part)
    return "-".join(out)
