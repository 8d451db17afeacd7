"""OVOS STT plugin for Google Cloud Speech-to-Text over REST with an API key."""
from __future__ import annotations

from typing import Any

from .version import __version__

__all__ = ["GoogleAPIKeySTT", "GoogleAPIKeySTTConfig", "__version__"]


def __getattr__(name: str) -> Any:
    # The plugin imports ovos-plugin-manager; wire/client/settings stay usable without it.
    if name in ("GoogleAPIKeySTT", "GoogleAPIKeySTTConfig", "PLUGIN_ID"):
        from . import plugin
        return getattr(plugin, name)
    raise AttributeError(name)
