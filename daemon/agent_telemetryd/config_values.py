"""Parsers of single settings: each takes the raw TOML or environment value and returns
the typed one or raises ValueError, whose message the config reports with its key.

No I/O and nothing of the daemon: the config, the CLI and the service installer share them.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit


class ConfigError(ValueError):
    """A setting is wrong; the message names the key and where it was set."""


class EndpointError(ConfigError):
    """A backend URL the daemon may not use; the message names the setting and the fix."""


@dataclass(frozen=True)
class RateRule:
    count: int
    per_seconds: float


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|min|h|d|w)?\s*$")
_UNIT_SECONDS = {
    None: 1.0,
    "ms": 0.001,
    "s": 1.0,
    "m": 60.0,
    "min": 60.0,
    "h": 3600.0,
    "d": 86400.0,
    "w": 604800.0,
}
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d*)\s*(s|sec|m|min|h|hour|d|day)\s*$")
_RATE_UNITS = {
    "s": 1,
    "sec": 1,
    "m": 60,
    "min": 60,
    "h": 3600,
    "hour": 3600,
    "d": 86400,
    "day": 86400,
}


def parse_duration(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("expected seconds or a duration like 30s, 15m, 1h")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ValueError(f"{value!r} is not a duration (use seconds, or 30s, 15m, 1h)")
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if not math.isfinite(seconds):
        # TOML has inf and nan: neither is a time to wait (nan failed the daemon's start
        # with a message that named no setting).
        raise ValueError(f"{value!r} is not a duration (use seconds, or 30s, 15m, 1h)")
    if seconds <= 0:
        raise ValueError("must be greater than zero")
    return seconds


def parse_idle_exit(value: Any) -> float:
    """A quiet period, or `off` (0: never idle out, even when socket-activated)."""
    if isinstance(value, str) and value.strip().lower() in ("off", "never", "0"):
        return 0.0
    if value is False or value == 0:
        return 0.0
    return parse_duration(value)


# The longest window a rate rule may have. The limiter reads a window's history back at
# start, and an event waits at most its backlog's worth of windows: a window of years put
# eligibility times past what a timestamp (year 9999) or SQLite's integer can hold, and the
# daemon failed to start.
MAX_RATE_WINDOW_SECONDS = 7 * 86400


def parse_rate_limit(value: Any) -> tuple[RateRule, ...]:
    """`60/min,1000/h` (or a TOML list of rules) → rules; `off` → none."""
    if isinstance(value, list | tuple):
        value = ",".join(str(part) for part in value)
    text = str(value).strip().lower()
    if text in ("off", "none", "0", "false"):
        return ()
    rules = []
    for part in text.split(","):
        match = _RATE.match(part)
        if not match:
            raise ValueError(f"{part.strip()!r} is not a rate (use e.g. 60/min,1000/h or off)")
        count, multiple, unit = int(match.group(1)), match.group(2), match.group(3)
        per = (int(multiple) if multiple else 1) * _RATE_UNITS[unit]
        if count <= 0 or per <= 0:
            raise ValueError(
                f"{part.strip()!r} must allow at least one event"
                " (to upload nothing, use mode local)"
            )
        if per > MAX_RATE_WINDOW_SECONDS:
            raise ValueError(f"{part.strip()!r}: a rule's window is at most 7d")
        rules.append(RateRule(count, float(per)))
    return tuple(rules)


def _whole_number(value: Any) -> int:
    """`value` as an int. A TOML float must be whole: `retention_days = 7.5` is not 7, and
    `inf` or `nan` (which TOML allows, and int() refuses with an OverflowError that no
    caller expects) is no number of anything. Raises ValueError or TypeError."""
    if isinstance(value, float) and not value.is_integer():
        raise ValueError(value)
    return int(value)


def parse_positive_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("expected a whole number")
    try:
        number = _whole_number(value)
    except (TypeError, ValueError):
        raise ValueError(f"{value!r} is not a whole number") from None
    if number <= 0:
        raise ValueError("must be greater than zero")
    return number


# The smallest buffer size cap accepted. An empty buffer (its tables, indexes, and the
# dashboard's and the agent analytics' rollups) is 35 pages, 140 KiB, before any event: a
# cap below that refused every event as "buffer full" with nothing stored, and a cap barely
# above it holds a few hundred. 1 MiB holds a few thousand small events.
MIN_BUFFER_BYTES = 1024 * 1024


def parse_buffer_bytes(value: Any) -> int:
    """`store.max_bytes`: a whole number of bytes, at least MIN_BUFFER_BYTES."""
    number = parse_positive_int(value)
    if number < MIN_BUFFER_BYTES:
        raise ValueError(
            f"{number} bytes is too small for a buffer: at least {MIN_BUFFER_BYTES} (1 MiB);"
            " an empty buffer takes 140 KiB before any event"
        )
    return number


def parse_port(value: Any) -> int | None:
    if isinstance(value, str) and value.strip().lower() in ("off", "none", "disabled"):
        return None
    if isinstance(value, bool):
        raise ValueError("expected a port number or off")
    try:
        port = _whole_number(value)
    except (TypeError, ValueError):
        raise ValueError(f"{value!r} is not a port number (0-65535, or off)") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"{port} is not a port number (0-65535, or off)")
    return port


def is_loopback_ip(text: str) -> bool:
    """127.0.0.0/8 or ::1: what http_host may be, and the Host check takes (http_guard).

    An IPv4-mapped form (::ffff:127.0.0.1) is refused: whether it counts as loopback
    differs between Python versions, and no client needs it.
    """
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return False
    return address.is_loopback


def parse_loopback_host(value: Any) -> str:
    host = str(value).strip()
    if host == "localhost":
        return "127.0.0.1"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"{host!r} is not an IP address; only loopback is allowed") from None
    if not is_loopback_ip(host):
        raise ValueError(
            f"{host} is not a loopback address (127.0.0.0/8 or ::1);"
            " the daemon listens on loopback only"
        )
    return str(address)  # one spelling: 0:0:0:0:0:0:0:1 is ::1, as the Host check sees it


def parse_choice(choices: tuple[str, ...]) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        text = str(value).strip().lower()
        if text not in choices:
            raise ValueError(f"{value!r} is not one of {', '.join(choices)}")
        return text

    return parse


def parse_text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("expected a non-empty string")
    return value.strip()


def parse_names(value: Any) -> frozenset[str]:
    if isinstance(value, str):
        value = [part for part in value.split(",") if part.strip()]
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValueError("expected a list of names")
    return frozenset(item.strip() for item in value)


def parse_flag(value: Any) -> bool:
    """Environment-style truth: set and not 0/false/no/off."""
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() not in ("", "0", "false", "no", "off")


def parse_ci(value: Any) -> bool:
    """`CI` as CI services set it: any non-empty value but `0` or `false` (`CI=no` is set)."""
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() not in ("", "0", "false")


_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


def check_endpoint(url: str, setting: str) -> str:
    """The URL without a trailing slash; raises EndpointError unless https or loopback http.

    Plain http is allowed to loopback alone, for a backend (or a test double) on this
    machine, where there is no network to eavesdrop on.
    """
    parts = urlsplit(url.strip())
    # The value itself is never quoted: messages reach the log, and a URL with a password
    # in it, or a key pasted into the wrong setting, is a secret.
    if parts.username or parts.password:
        raise EndpointError(f"{setting}: put credentials in the API key setting, not the URL")
    if parts.scheme not in ("https", "http") or not parts.hostname:
        shown = f"a {parts.scheme}: URL" if parts.scheme.isalnum() else "the value"
        raise EndpointError(f"{setting}: {shown} is not an http(s) URL with a host")
    if parts.query or parts.fragment:
        raise EndpointError(f"{setting}: the URL must not have a query or fragment")
    if parts.scheme == "http" and not _is_loopback_endpoint(parts.hostname):
        raise EndpointError(
            f"{setting}: {parts.hostname} is not loopback; use https:// "
            "(plain http is allowed only to 127.0.0.1, ::1 or localhost)"
        )
    return url.strip().rstrip("/")


def _is_loopback_endpoint(host: str) -> bool:
    host = host.strip("[]").lower()
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
