"""Structured JSON logs that never hold event contents, keys or client addresses.

Our own log calls pass only reasons and counts. Third-party records (aiohttp, asyncpg,
APScheduler) are bridged through the same JSON renderer with their %-arguments dropped,
because aiohttp fills them with the peer's address ("Error handling request from %s").
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

# Keys that must never reach a log line, whoever added them.
_FORBIDDEN_KEYS = frozenset(
    {"remote", "peer", "peername", "ip", "client_ip", "authorization", "api_key", "key", "body"}
)


def drop_forbidden_keys(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Remove keys that could carry an address, a secret or event contents."""
    for key in _FORBIDDEN_KEYS.intersection(event_dict):
        del event_dict[key]
    return event_dict


class DropArguments(logging.Filter):
    """Log a foreign record's message template only: its arguments may hold a client address."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            record.msg = str(record.msg)
            record.args = ()
        return True


def configure(level: int = logging.INFO, stream: TextIO | None = None) -> None:
    """Send structlog and stdlib logging to `stream` (stderr) as one JSON object a line."""
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        drop_forbidden_keys,
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
    )
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter)
    handler.addFilter(DropArguments())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiohttp's own access log prints the remote address; ours (access_log.py) replaces it.
    logging.getLogger("aiohttp.access").disabled = True
    # APScheduler narrates every job run at INFO; our retention job logs its own outcome.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
