"""Our log lines, through OVOS's LOG: each OVOS service sets LOG's level, format and files.

``LOG.info()`` itself names its caller with ``inspect.stack()``, which costs milliseconds on
every call, even below the level (1-4 ms on an idle x86 core, 8.5 ms median under load; a
Raspberry Pi is slower): too much for a line per request or per retry. So each module logs
through the logger LOG keeps for it (``LOG.create_logger``): LOG's handlers, level and format,
named "<service> - <module>".
"""
from __future__ import annotations

import logging
from typing import Any

from ovos_utils.log import LOG


class ModuleLog:
    """LOG for one module, with LOG's methods: ``debug``, ``info``, ``warning``, ``error``,
    ``exception``."""

    def __init__(self, module: str) -> None:
        self.module = module

    def logger(self) -> logging.Logger:
        # Looked up on each call (a dict lookup): a service names LOG after importing us.
        return LOG.create_logger(f"{LOG.name} - {self.module}")

    def debug(self, msg: str, *args: Any) -> None:
        self.logger().debug(msg, *args, stacklevel=2)

    def info(self, msg: str, *args: Any) -> None:
        self.logger().info(msg, *args, stacklevel=2)

    def warning(self, msg: str, *args: Any) -> None:
        self.logger().warning(msg, *args, stacklevel=2)

    def error(self, msg: str, *args: Any) -> None:
        self.logger().error(msg, *args, stacklevel=2)

    def exception(self, msg: str, *args: Any) -> None:
        self.logger().exception(msg, *args, stacklevel=2)
