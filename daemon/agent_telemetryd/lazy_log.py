"""Every module's structlog logger, loading structlog at its first log call.

The commands import many of the daemon's modules (the buffer's above all) and almost
never log through them. Importing structlog there, with the asyncio it loads, was ~75 ms
of an `export`'s start that nothing used. The daemon configures structlog as it starts,
so its first log call finds it loaded already. All loggers come from here, so a
command's configuration (`configure_when_loaded`) is in place for whichever logs first.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# What to do to structlog before the first call of a logger loads it (a command's own
# rendering); run at once when one has loaded it already.
_pending: list[Callable[[], None]] = []
_loaded = False


class LazyLogger:
    """`structlog.get_logger(name)`, got at the first attribute asked of it."""

    __slots__ = ("_logger", "_name")

    def __init__(self, name: str) -> None:
        self._name = name
        self._logger: Any = None

    def __getattr__(self, method: str) -> Any:
        if self._logger is None:
            self._logger = _load().get_logger(self._name)
        return getattr(self._logger, method)


def get_logger(name: str) -> LazyLogger:
    return LazyLogger(name)


def configure_when_loaded(configure: Callable[[], None]) -> None:
    """Run `configure` (which imports structlog) before the first log call loads
    structlog, or now if one has."""
    if _loaded:
        configure()
    elif configure not in _pending:  # a command may ask twice (each file it opens)
        _pending.append(configure)


def _load() -> Any:
    global _loaded
    import structlog

    if not _loaded:
        _loaded = True
        while _pending:
            _pending.pop(0)()
    return structlog
