"""A time a user gives to narrow events by when they were received (`export --since`,
`stats --until`): a duration back from now, epoch milliseconds, or an RFC 3339 time.

A duration is written as everywhere else in the settings (`config_values.parse_duration`:
`90s`, `30m`, `24h`, `7d`, `2w`), so what works for `upload_interval` works here. A bare
number is epoch milliseconds, not seconds back. No I/O.
"""

from __future__ import annotations

from datetime import datetime

from agent_telemetryd.config_values import parse_duration

_LATEST_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z


def parse_time(value: str | None, now_ms: int, name: str) -> int | None:
    """Epoch ms for `value`; None when it is empty. Raises ValueError with a message that
    names `name` (the option) and the forms it takes."""
    if not value or not value.strip():
        return None
    text = value.strip()
    if text.startswith("-"):
        # "-5h" would mean five hours from now (a range that holds nothing yet), "-5"
        # before 1970: neither can be what was meant.
        if text[1:].isdigit():
            raise ValueError(f"{name} {value!r}: epoch milliseconds cannot be negative")
        raise ValueError(
            f"{name} {value!r} is negative; a time back from now is written without a sign "
            f"({text[1:]} means that long ago)"
        )
    if text.lstrip("+").isdigit():
        return min(int(text), _LATEST_MS)
    if "T" in text.upper():
        return _rfc3339_ms(text, name, value)
    try:
        seconds = parse_duration(text)
    except ValueError as error:
        if "greater than zero" in str(error):
            raise ValueError(
                f"{name} {value!r} is zero; a time back from now must be greater than zero, "
                "such as 1h"
            ) from None
        raise ValueError(_forms(name, value)) from None
    back_ms = seconds * 1000
    # SQLite integers are 64-bit (and a float may be infinite): "99999999999d" back is
    # simply "since 1970".
    return 0 if back_ms >= now_ms else now_ms - int(back_ms)


def _rfc3339_ms(text: str, name: str, value: str) -> int:
    # fromisoformat (3.11) reads RFC 3339, "Z" included; a time without an offset would
    # mean a different moment on every machine, so it is refused.
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(_forms(name, value)) from None
    if moment.tzinfo is None:
        raise ValueError(_forms(name, value))
    return min(max(int(moment.timestamp() * 1000), 0), _LATEST_MS)


def _forms(name: str, value: str) -> str:
    return (
        f"{name} must be a time back from now such as 24h or 7d (a number with s, m, h, d "
        "or w), epoch milliseconds, or an RFC 3339 time such as 2024-05-01T09:00:00Z; "
        f"not {value!r}"
    )
