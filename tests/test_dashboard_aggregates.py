"""Dashboard aggregates against hand-computed numbers, on a real SQLite buffer file."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent_telemetry_server.validation import is_error as server_is_error
from agent_telemetryd.dashboard import aggregates
from agent_telemetryd.dashboard.filters import Filters
from agent_telemetryd.dashboard.views import without_rollups
from agent_telemetryd.store.dashboard_sql import coarse_bucket_sql, fold, fold_all, unfolded
from agent_telemetryd.store.database import connect, open_buffer
from agent_telemetryd.store.migrations import MIGRATIONS

H = 1_767_225_600_000  # 2026-01-01T00:00:00Z, a whole hour
HOUR = 3_600_000

# (minutes after H, agent, event, properties). Hand-computed below.
FIXTURE: list[tuple[int, str, str, dict[str, Any]]] = [
    # hour 0: 4 events, 2 errors (a `.failed` name; a non-false `error` property)
    (1, "planner", "agent.run.completed", {"duration_ms": 100}),
    (2, "planner", "tool.call.failed", {}),
    (3, "coder", "agent.run.completed", {"error": "timeout", "duration_ms": 300}),
    (59, "coder", "agent.run.completed", {"error": False, "duration_ms": 200}),
    # hour 1: nothing
    # hour 2: 6 events, 1 error (`.error` name with status error)
    *[
        (120 + i, "planner", "agent.run.completed", {"duration_ms": d})
        for i, d in enumerate((400, 500, 600, 700, 800))
    ],
    (150, "coder", "llm.error", {"status": "error"}),
    # hour 3: 2 events, no errors (status ok; error null); one duration not a whole-ms < 1 s
    (180, "coder", "tool.call.completed", {"status": "ok"}),
    (181, "planner", "agent.run.completed", {"error": None, "duration_ms": 1234}),
    # not durations: a string, a negative number
    (182, "coder", "tool.call.completed", {"duration_ms": "fast"}),
    (183, "coder", "tool.call.completed", {"duration_ms": -5}),
]
# Per hour: 4, 0, 6, 4 events; 2, 0, 1, 0 errors; 14 events, 3 errors.
# Durations sorted: 100 200 300 400 500 600 700 800 1234 (n = 9).
# Nearest rank: p50 = 5th = 500; p95 = ceil(8.55) = 9th = 1234 (bucket 1230, within 0.5%).


def insert(conn: sqlite3.Connection, rows: list[tuple[int, str, str, dict[str, Any]]]) -> None:
    start = conn.execute("SELECT coalesce(max(id), 0) FROM events").fetchone()[0]
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO events (uuid, event, ts_ms, received_ms, properties, agent, pid,"
        " transport, consent, upload, anonymous_id, daemon_version)"
        " VALUES (?, ?, ?, ?, ?, ?, 1, 'unix', 'local', 'local', 'anon', 'test')",
        [
            (f"u-{start + i}", name, H + m * 60_000, H + m * 60_000, json.dumps(p), agent)
            for i, (m, agent, name, p) in enumerate(rows)
        ],
    )
    conn.execute("COMMIT")


def fold_some(conn: sqlite3.Connection, limit: int) -> None:
    conn.execute("BEGIN IMMEDIATE")
    fold(conn, limit)
    conn.execute("COMMIT")


@pytest.fixture(params=["unfolded", "half-folded", "folded"])
def buffer(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sqlite3.Connection]:
    """The same fixture read three ways: all from the tail, split, all from the rollups."""
    conn = open_buffer(tmp_path / "buffer.sqlite3")
    insert(conn, FIXTURE)
    if request.param == "half-folded":
        fold_some(conn, 7)
    elif request.param == "folded":
        fold_all(conn)
        assert unfolded(conn) == 0
    yield conn
    conn.close()


def test_counts_per_hour(buffer: sqlite3.Connection) -> None:
    """Hourly buckets count events and errors, with the empty hour in between as zero."""
    series = aggregates.over_time(buffer, Filters(bucket="hour"))
    assert [(p["t_ms"], p["events"], p["errors"]) for p in series] == [
        (H, 4, 2),
        (H + HOUR, 0, 0),
        (H + 2 * HOUR, 6, 1),
        (H + 3 * HOUR, 4, 0),
    ]
    assert series[0]["error_rate"] == 0.5
    assert series[1]["error_rate"] is None


def test_error_rate(buffer: sqlite3.Connection) -> None:
    """Error rate is errors / events under the documented error rule."""
    assert aggregates.totals(buffer, Filters()) == {
        "events": 14,
        "errors": 3,
        "error_rate": round(3 / 14, 6),
    }
    coder = aggregates.totals(buffer, Filters(agent="coder"))
    assert coder == {"events": 6, "errors": 2, "error_rate": round(2 / 6, 6)}


def test_duration_percentiles(buffer: sqlite3.Connection) -> None:
    """p50/p95 are nearest-rank; exact below 1 s, within 0.5% above."""
    result = aggregates.durations(buffer, Filters(bucket="hour"))
    assert result["count"] == 9
    assert result["p50_ms"] == 500
    assert abs(result["p95_ms"] - 1234) / 1234 <= 0.005
    per_hour = {p["t_ms"]: (p["count"], p["p50_ms"], p["p95_ms"]) for p in result["over_time"]}
    assert per_hour[H] == (3, 200, 300)
    assert per_hour[H + 2 * HOUR] == (5, 600, 800)


def test_whole_ms_percentiles_are_exact(tmp_path: Path) -> None:
    """Twenty durations 1..20 ms: p50 is the 10th (10 ms), p95 the 19th (19 ms)."""
    conn = open_buffer(tmp_path / "b.sqlite3")
    insert(conn, [(i, "a", "x", {"duration_ms": 21 - i}) for i in range(1, 21)])
    fold_some(conn, 11)
    result = aggregates.durations(conn, Filters())
    assert (result["count"], result["p50_ms"], result["p95_ms"], result["max_ms"]) == (
        20,
        10,
        19,
        20,
    )


def test_breakdowns_and_filters(buffer: sqlite3.Connection) -> None:
    """By agent / by event name, and the time and name filters narrow every view."""
    agents = aggregates.by_agent(buffer, Filters())["rows"]
    assert [(r["name"], r["events"], r["errors"]) for r in agents] == [
        ("planner", 8, 1),
        ("coder", 6, 2),
    ]
    names = {r["name"]: r["events"] for r in aggregates.by_event(buffer, Filters())["rows"]}
    assert names == {
        "agent.run.completed": 9,
        "tool.call.failed": 1,
        "llm.error": 1,
        "tool.call.completed": 3,
    }
    hour2 = Filters(since_ms=H + 2 * HOUR, until_ms=H + 3 * HOUR)
    assert aggregates.totals(buffer, hour2)["events"] == 6
    only = Filters(event="agent.run.completed", agent="planner")
    assert aggregates.totals(buffer, only)["events"] == 7
    assert aggregates.choices(buffer, hour2) == {
        "agents": ["coder", "planner"],
        "events": ["agent.run.completed", "llm.error"],
    }


def test_day_buckets_follow_the_utc_offset(buffer: sqlite3.Connection) -> None:
    """At UTC-2, hours 0-1 belong to the previous local day; hours 2-3 start a new one."""
    f = Filters(bucket="day", tz_offset_min=-120)
    series = aggregates.over_time(buffer, f)
    day = 24 * HOUR
    assert [(p["t_ms"], p["events"]) for p in series] == [
        (H - day + 2 * HOUR, 4),
        (H + 2 * HOUR, 10),
    ]


def test_deletes_leave_the_rollups_exact(tmp_path: Path) -> None:
    """Retention/eviction/clear delete rows; the trigger keeps the rollups equal to a
    recount, a cleared buffer keeps no names, and reused ids are still counted."""
    conn = open_buffer(tmp_path / "b.sqlite3")
    insert(conn, FIXTURE)
    fold_all(conn)
    conn.execute("DELETE FROM events WHERE received_ms < ?", (H + 2 * HOUR,))
    assert aggregates.totals(conn, Filters()) == {
        "events": 10,
        "errors": 1,
        "error_rate": 0.1,
    }
    assert aggregates.durations(conn, Filters())["count"] == 6
    conn.execute("DELETE FROM events")
    assert conn.execute("SELECT count(*) FROM dash_hourly").fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM dash_durations").fetchone()[0] == 0
    insert(conn, FIXTURE[:2])  # SQLite hands out ids from 1 again
    assert aggregates.totals(conn, Filters())["events"] == 2
    fold_all(conn)
    assert aggregates.totals(conn, Filters())["events"] == 2


def test_trigger_and_fold_agree_on_every_row(tmp_path: Path) -> None:
    """Folding then deleting each event one by one brings every rollup cell back to zero:
    the trigger's copies of the error and bucket rules match the fold's."""
    conn = open_buffer(tmp_path / "b.sqlite3")
    insert(conn, FIXTURE)
    fold_all(conn)
    for (row_id,) in conn.execute("SELECT id FROM events ORDER BY id DESC").fetchall():
        conn.execute("DELETE FROM events WHERE id = ?", (row_id,))
        recount = aggregates.totals(conn, Filters())
        stored = conn.execute(
            "SELECT coalesce(sum(events), 0), coalesce(sum(errors), 0) FROM dash_hourly"
        ).fetchone()
        assert (recount["events"], recount["errors"]) == stored
    assert conn.execute("SELECT count(*) FROM dash_durations").fetchone()[0] == 0


def test_uploads_empty_and_filled(tmp_path: Path) -> None:
    """Upload history reads the receipts table: empty at first, newest first after."""
    conn = open_buffer(tmp_path / "b.sqlite3")
    assert aggregates.uploads(conn) == {"available": True, "recent": [], "totals": {}}
    conn.executemany(
        "INSERT INTO upload_receipts (sent_ms, backend, events, body_sha256, status,"
        " http_status, error) VALUES (?, 'posthog', ?, 'h', ?, ?, ?)",
        [(H, 100, "sent", 200, None), (H + 1, 40, "failed", 503, "server error")],
    )
    result = aggregates.uploads(conn)
    assert [r["events"] for r in result["recent"]] == [40, 100]
    assert result["totals"] == {
        "sent": {"batches": 1, "events": 100},
        "failed": {"batches": 1, "events": 40},
    }


def test_collect_on_an_empty_buffer(tmp_path: Path) -> None:
    """A fresh buffer gives zeros and empty lists, not errors (the page's empty state)."""
    conn = open_buffer(tmp_path / "b.sqlite3")
    data = aggregates.collect(conn, Filters())
    assert data["totals"] == {"events": 0, "errors": 0, "error_rate": None}
    assert data["over_time"] == []
    assert data["durations"]["count"] == 0
    assert data["by_agent"]["rows"] == []


def test_day_buckets_keep_two_significant_digits(buffer: sqlite3.Connection) -> None:
    """Per-day percentiles round the 3-digit bucket to 2 digits (1230 -> 1200); the
    overall and per-event ones stay at 3, with or without an agent filter."""
    result = aggregates.durations(buffer, Filters(bucket="day"))
    assert [(p["t_ms"], p["count"], p["p50_ms"], p["p95_ms"]) for p in result["over_time"]] == [
        (H, 9, 500, 1200)
    ]
    assert (result["p50_ms"], result["p95_ms"]) == (500, 1230)
    # planner: 100 400 500 600 700 800 1234 -> p50 the 4th, p95 the 7th
    planner = aggregates.durations(buffer, Filters(bucket="day", agent="planner"))
    assert [(p["count"], p["p50_ms"], p["p95_ms"]) for p in planner["over_time"]] == [
        (7, 600, 1200)
    ]
    assert planner["by_event"][0]["p95_ms"] == 1230


def coarse_recount(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
    return conn.execute(
        f"SELECT hour, {coarse_bucket_sql('bucket')} AS b, sum(n) FROM dash_durations"
        " GROUP BY 1, 2 ORDER BY 1, 2"
    ).fetchall()


def coarse_stored(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
    return conn.execute("SELECT hour, bucket, n FROM dash_duration_hours ORDER BY 1, 2").fetchall()


def test_coarse_histogram_follows_the_fine_one(tmp_path: Path) -> None:
    """dash_duration_hours stays dash_durations summed to 2 digits through folds (new
    cells and added counts) and deletes, down to empty."""
    conn = open_buffer(tmp_path / "b.sqlite3")
    insert(conn, FIXTURE)
    fold_some(conn, 7)
    insert(conn, FIXTURE)  # the same cells again: the fold's upsert adds to them
    fold_all(conn)
    assert coarse_stored(conn) == coarse_recount(conn)
    assert sum(n for _, _, n in coarse_stored(conn)) == 18
    for (row_id,) in conn.execute("SELECT id FROM events ORDER BY id").fetchall():
        conn.execute("DELETE FROM events WHERE id = ?", (row_id,))
        assert coarse_stored(conn) == coarse_recount(conn)
    assert coarse_stored(conn) == []


def test_an_old_folded_buffer_upgrades_to_the_same_day_percentiles(tmp_path: Path) -> None:
    """A buffer folded under migration 3 is upgraded (migration 6 empties the rollups for a
    re-fold under the current error rule); a read-only reader of the version-3 file, the
    upgraded file, and the upgraded file re-folded all see the same day percentiles."""
    path = tmp_path / "b.sqlite3"
    old = sqlite3.connect(path, isolation_level=None)
    for script in MIGRATIONS[:3]:
        old.executescript(script)
    old.execute("PRAGMA user_version = 3")
    insert(old, FIXTURE)
    fold_all(old)
    old.close()
    reader = connect(path, readonly=True)
    without_rollups(reader)
    before = aggregates.durations(reader, Filters(bucket="day"))
    reader.close()
    conn = open_buffer(path)
    assert aggregates.durations(conn, Filters(bucket="day")) == before
    fold_all(conn)
    assert coarse_stored(conn) == coarse_recount(conn) != []
    assert aggregates.durations(conn, Filters(bucket="day")) == before
    assert before["over_time"][0]["p95_ms"] == 1200


def test_the_error_rule_matches_the_reference_server(tmp_path: Path) -> None:
    """0 and "" in properties.error mean no error; status "failed" is one — folded or not,
    and the same answers as the server's `is_error` for every case."""
    cases = [
        ({"error": 0}, False),
        ({"error": ""}, False),
        ({"error": 0.0}, False),
        ({"error": None}, False),
        ({"error": False}, False),
        ({"error": "0"}, True),
        ({"error": 3}, True),
        ({"error": True}, True),
        ({"error": {"code": 1}}, True),
        ({"status": "failed"}, True),
        ({"status": "ok"}, False),
    ]
    for folded in (False, True):
        conn = open_buffer(tmp_path / f"rule-{folded}.sqlite3")
        insert(conn, [(i, "coder", "agent.step", p) for i, (p, _) in enumerate(cases)])
        if folded:
            fold_all(conn)
        errors = aggregates.totals(conn, Filters())["errors"]
        assert errors == sum(expected for _, expected in cases)
        conn.close()
    for properties, expected in cases:
        assert server_is_error("agent.step", properties) is expected, properties
