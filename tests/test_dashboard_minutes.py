"""Minute buckets for a range of a few hours: read from the events themselves, they add
up to the same totals as the hourly rollups, folded or not."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent_telemetryd.dashboard import aggregates, views
from agent_telemetryd.dashboard.filters import Filters
from agent_telemetryd.store import dashboard_sql
from agent_telemetryd.store.dashboard_sql import fold_all
from agent_telemetryd.store.database import open_buffer
from tests.test_dashboard_aggregates import FIXTURE, HOUR, H, insert

MINUTE = 60_000


@pytest.fixture(params=["unfolded", "folded"])
def buffer(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sqlite3.Connection]:
    conn = open_buffer(tmp_path / "buffer.sqlite3")
    insert(conn, FIXTURE)
    if request.param == "folded":
        fold_all(conn)
    yield conn
    conn.close()


def test_minutes_count_each_event_in_its_minute(buffer: sqlite3.Connection) -> None:
    """From minute 1 to minute 183 of the fixture, empty minutes as zero."""
    series = aggregates.over_time(buffer, Filters(bucket="minute"))
    assert series[0]["t_ms"] == H + MINUTE and series[-1]["t_ms"] == H + 183 * MINUTE
    assert len(series) == 183
    counted = {(p["t_ms"] - H) // MINUTE: (p["events"], p["errors"]) for p in series if p["events"]}
    expected: dict[int, tuple[int, int]] = {}
    for minute, _, name, props in FIXTURE:
        error = int(name.endswith((".failed", ".error")) or bool(props.get("error")))
        events, errors = expected.get(minute, (0, 0))
        expected[minute] = (events + 1, errors + error)
    assert counted == expected
    assert sum(p["events"] for p in series) == 14 and sum(p["errors"] for p in series) == 3


def test_a_range_of_a_few_hours_opens_in_minutes(buffer: sqlite3.Connection) -> None:
    """The page's first load: four hours are minutes (events, errors and durations over
    time), summing to the totals; eight hours are hours."""
    short = views.read_view("all", buffer, Filters(since_ms=H, until_ms=H + 4 * HOUR))
    assert short["filters"]["bucket"] == "minute"
    assert short["cost"]["bucket"] == "minute"
    assert sum(p["events"] for p in short["over_time"]) == short["totals"]["events"] == 14
    durations = {(p["t_ms"] - H) // MINUTE: p for p in short["durations"]["over_time"]}
    assert (durations[1]["count"], durations[1]["p50_ms"]) == (1, 100)
    assert (durations[122]["count"], durations[122]["p95_ms"]) == (1, 600)
    assert sum(p["count"] for p in durations.values()) == short["durations"]["count"] == 9

    planner = views.read_view(
        "all", buffer, Filters(since_ms=H, until_ms=H + 4 * HOUR, agent="planner")
    )
    assert sum(p["events"] for p in planner["over_time"]) == planner["totals"]["events"] == 8

    long = views.read_view("all", buffer, Filters(since_ms=H, until_ms=H + 8 * HOUR))
    assert long["filters"]["bucket"] == "hour"
    assert [p["events"] for p in long["over_time"]] == [4, 0, 6, 4]


def test_the_span_view_says_where_the_data_is(buffer: sqlite3.Connection) -> None:
    assert views.read_view("span", buffer, Filters()) == {
        "span": {"first_ms": H + MINUTE, "last_ms": H + 183 * MINUTE}
    }


def test_a_busy_range_is_shown_in_hours(
    buffer: sqlite3.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Minutes read every event of the range; past the bound (14 events here, against a
    bound of 10) the same range comes in hours, the cost series too, with the same sums."""
    monkeypatch.setattr(dashboard_sql, "MINUTE_EVENTS_MAX", 10)
    f = Filters(since_ms=H, until_ms=H + 4 * HOUR)
    busy = views.read_view("all", buffer, f)
    assert (busy["filters"]["bucket"], busy["cost"]["bucket"]) == ("hour", "hour")
    assert [p["events"] for p in busy["over_time"]] == [4, 0, 6, 4]
    monkeypatch.setattr(dashboard_sql, "MINUTE_EVENTS_MAX", 14)
    assert views.read_view("all", buffer, f)["filters"]["bucket"] == "minute"
