"""Structured JSON logs that never hold event contents, keys or client addresses.

Our own log calls pass only reasons and counts. Third-party records (aiohttp, asyncpg,
APScheduler) are bridged through the same JSON renderer with their %-arguments dropped,
because aiohttp fills them with the peer's address ("Error handling request from %s"),
and with their exception reduced to its type (and code frames), because an exception's
text can quote the request: aiohttp's BadHttpMessage repeats the bad header line, key
and all.
"""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

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


# What a client's malformed request raises inside aiohttp's protocol handler.
_PROTOCOL_ERRORS = (HttpProcessingError, RequestPayloadError)


class DropExceptionText(logging.Filter):
    """Replace a foreign record's exception by its type: the text may quote request data.

    aiohttp's protocol errors (a malformed request line or header, a broken body) are the
    client's fault: they keep the type only, at WARNING. Any other exception keeps its
    code frames too (file, line, source; never the values), for debugging.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.exc_info:
            return True
        _type, exc, tb = record.exc_info
        record.exc_info = None
        record.exc_text = None
        record.error_type = type(exc).__name__
        if isinstance(exc, _PROTOCOL_ERRORS):
            if record.levelno > logging.WARNING:
                record.levelno, record.levelname = logging.WARNING, "WARNING"
        elif tb is not None:
            record.traceback = "".join(traceback.format_tb(tb))
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
        foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder(allow=("error_type", "traceback"))],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
    )
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter)
    handler.addFilter(DropArguments())
    handler.addFilter(DropExceptionText())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiohttp's own access log prints the remote address; ours (access_log.py) replaces it.
    logging.getLogger("aiohttp.access").disabled = True
    # APScheduler narrates every job run at INFO; our retention job logs its own outcome.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
