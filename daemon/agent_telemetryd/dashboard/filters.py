"""The dashboard's filters: a time range (whole UTC hours), an agent, an event name, a model,
a tool, and the chart's buckets."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

from agent_telemetryd.store.dashboard_sql import HOUR_MS
from agent_telemetryd.time_filters import parse_time

BUCKETS = ("minute", "hour", "day", "auto")
# Past this span an hourly chart has more bars than a screen has pixels for them.
AUTO_DAY_AFTER_MS = 3 * 24 * HOUR_MS
# Minute buckets read the events themselves, not the hourly rollups: only for short ranges.
MINUTES_UP_TO_MS = 6 * HOUR_MS


@dataclass(frozen=True, slots=True)
class Filters:
    """`since_ms`/`until_ms` as asked; the views count whole hours (`first_hour`,
    `end_hour`), as the rollups are hourly, and echo the range so (`as_dict`)."""

    since_ms: int | None = None
    until_ms: int | None = None
    agent: str | None = None
    event: str | None = None
    bucket: str = "auto"
    tz_offset_min: int = 0  # minutes east of UTC: where a "day" starts
    model: str | None = None  # the agent analytics' views only
    tool: str | None = None

    def __post_init__(self) -> None:
        if self.bucket not in BUCKETS:
            raise ValueError(f"bucket must be one of {', '.join(BUCKETS)}, not {self.bucket!r}")
        if not -14 * 60 <= self.tz_offset_min <= 14 * 60:
            raise ValueError("tz must be a UTC offset in minutes, between -840 and 840")
        since, until = self.since_ms, self.until_ms
        if since is not None and until is not None and until <= since:
            raise ValueError("until must be later than since")

    @property
    def first_hour(self) -> int | None:
        return None if self.since_ms is None else self.since_ms // HOUR_MS

    @property
    def end_hour(self) -> int | None:
        """Exclusive; an `until` inside an hour keeps that hour."""
        return None if self.until_ms is None else -(-self.until_ms // HOUR_MS)

    def resolved(
        self, first_ms: int | None, last_ms: int | None, *, minutes: bool = False
    ) -> Filters:
        """`auto` becomes hours for spans up to three days, else days; with `minutes` (the
        views that have them), minutes for spans up to six hours. `minute` asked for a
        longer span, or by a view without minutes, becomes hours."""
        start = self.since_ms if self.since_ms is not None else first_ms
        end = self.until_ms if self.until_ms is not None else last_ms
        span = None if start is None or end is None else end - start
        if self.bucket == "minute":
            fits = minutes and span is not None and span <= MINUTES_UP_TO_MS
            return self if fits else replace(self, bucket="hour")
        if self.bucket != "auto":
            return self
        if minutes and span is not None and span <= MINUTES_UP_TO_MS:
            return replace(self, bucket="minute")
        short = span is None or span <= AUTO_DAY_AFTER_MS
        return replace(self, bucket="hour" if short else "day")

    def as_dict(self) -> dict[str, Any]:
        """The filters as the views echo them: the range as counted, widened to whole
        hours, so a page that states the range states what its numbers cover."""
        found = asdict(self)
        found["since_ms"] = None if self.first_hour is None else self.first_hour * HOUR_MS
        found["until_ms"] = None if self.end_hour is None else self.end_hour * HOUR_MS
        return found

    @classmethod
    def from_query(cls, query: Mapping[str, str], now_ms: int) -> Filters:
        """From URL parameters: since/until (`time_filters.parse_time`, as `stats` and
        `export` read them), agent, event, model, tool, bucket (minute|hour|day|auto), tz
        (minutes east of UTC)."""
        since = parse_time(query.get("since"), now_ms, "since")
        until = parse_time(query.get("until"), now_ms, "until")
        return cls(
            since_ms=since,
            until_ms=until,
            agent=query.get("agent") or None,
            event=query.get("event") or None,
            bucket=query.get("bucket") or "auto",
            tz_offset_min=_int(query.get("tz") or "0", "tz"),
            model=query.get("model") or None,
            tool=query.get("tool") or None,
        )


def _int(value: str, name: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{name} must be a whole number, not {value!r}") from None
