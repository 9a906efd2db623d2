"""Loggers for the runtime that import `logging` only once a record could be emitted.

Importing `logging` (with threading, traceback and string) is about 3 ms of a cold start, and an
app that embeds the runtime may never log. Until some code imports `logging`, no handler exists
and the root logger's level is WARNING, so `logging.getLogger(name).debug(...)` or `.info(...)`
would drop the record: those are dropped without importing it. Every record that could be
emitted (any level once `logging` is imported; WARNING and above always) goes to
`logging.getLogger(name)` as usual, naming the caller's line, not this module's.
"""

from __future__ import annotations

import sys
from typing import Any

#: logging.WARNING, which `logging` is not imported to read.
_WARNING = 30


class RuntimeLogger:
    """Stand-in for `logging.getLogger(name)` with the methods the runtime uses."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def log(self, level: int, msg: str, *args: Any, stacklevel: int = 1) -> None:
        """Log like `logging.getLogger(self.name).log`, importing logging only when the record could be emitted."""
        if level < _WARNING and "logging" not in sys.modules:
            return
        import logging

        # One frame for this method: the record names the runtime's line that logged it.
        logging.getLogger(self.name).log(level, msg, *args, stacklevel=stacklevel + 1)

    def debug(self, msg: str, *args: Any) -> None:
        """Log at DEBUG (10)."""
        self.log(10, msg, *args, stacklevel=2)

    def info(self, msg: str, *args: Any) -> None:
        """Log at INFO (20)."""
        self.log(20, msg, *args, stacklevel=2)

    def warning(self, msg: str, *args: Any) -> None:
        """Log at WARNING (30)."""
        self.log(_WARNING, msg, *args, stacklevel=2)


def get_logger(name: str) -> RuntimeLogger:
    """Return the runtime's logger for a module: `logging.getLogger(name)`, imported on first record."""
    return RuntimeLogger(name)
