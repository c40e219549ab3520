"""structlog, JSON lines on stderr: the journal (or launchd's log file) keeps them.

Log records carry reasons and counts. Event contents, properties and secrets never go
into a log call: that is a rule for every module, not a filter here.

Records from other libraries' `logging` loggers (asyncio, aiohttp, APScheduler) become
JSON lines too, reduced on the way: the first line of the message template without its
%-arguments (a message formatted before logging, as asyncio's are, is cut where a value's
repr begins), and an exception as its type only. Those are the places where request data
hides: aiohttp fills its arguments with the peer's address and its exceptions quote the
bad header or URL, and asyncio writes a callback's arguments into its message. (aiohttp's
server logger does not get that far: each HTTP connection has its own, see
receivers/http_connection.py.)
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys

import structlog

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
_OWN_LOGGERS = "agent_telemetryd"
# Where a repr or a value starts in a message formatted before it was logged.
_VALUE_START = re.compile(r"""[(<'"=\[{]""")


def foreign_message(record: logging.LogRecord) -> str:
    """The part of another library's message that cannot hold data (see the docstring)."""
    first_line = str(record.msg).split("\n", 1)[0]
    if record.args:
        return first_line  # a template: the values are in the arguments, dropped
    return _VALUE_START.split(first_line, 1)[0].rstrip(" :")


class ForeignRecordHandler(logging.Handler):
    """Hands `logging` records to structlog, reduced as the module docstring says; the
    daemon's own stdlib loggers keep their arguments (their messages are ours)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            own = record.name == _OWN_LOGGERS or record.name.startswith(_OWN_LOGGERS + ".")
            message = record.getMessage() if own else foreign_message(record)
            fields: dict[str, object] = {"logger": record.name}
            if record.exc_info and record.exc_info[1] is not None:
                fields["error_type"] = type(record.exc_info[1]).__name__
            structlog.get_logger(record.name).log(record.levelno, message, **fields)
        except Exception:
            self.handleError(record)


class LogStream:
    """stderr for log lines, which never raises.

    Where the lines go can vanish under a running daemon: the terminal it was started in
    is closed (every write then fails with EIO), the reader of a pipe goes away (EPIPE).
    A log call is made from everywhere, the shutdown's steps included, so a write that
    failed there would break what was being logged; the line is lost instead."""

    def write(self, text: str) -> None:
        with contextlib.suppress(OSError, ValueError):  # ValueError: stderr closed
            sys.stderr.write(text)

    def flush(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.flush()


def configure_logging(level: str = "info") -> None:
    threshold = _LEVELS.get(level, logging.INFO)
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(threshold),
        logger_factory=structlog.PrintLoggerFactory(file=LogStream()),  # type: ignore[arg-type]
        cache_logger_on_first_use=True,
    )
    root = logging.getLogger()
    root.handlers[:] = [ForeignRecordHandler()]
    # Other libraries speak up from WARNING on (APScheduler narrates each job at INFO);
    # the daemon's own loggers follow the configured level.
    root.setLevel(max(threshold, logging.WARNING))
    logging.getLogger(_OWN_LOGGERS).setLevel(threshold)
    # aiohttp's access log would record every request line; the daemon keeps it off.
    logging.getLogger("aiohttp.access").disabled = True
