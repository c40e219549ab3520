"""What the filters select, as the views answer, on a real buffer file folded or not: the
range a view echoes is the range it counted, and the tool filter selects the very calls
the Tools view counts."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent_telemetryd.dashboard import views
from agent_telemetryd.dashboard.agent_views import AgentQuery
from agent_telemetryd.dashboard.filters import Filters
from agent_telemetryd.store import analytics_fold, dashboard_sql
from agent_telemetryd.store.database import open_buffer

MINUTE, HOUR = 60_000, 3_600_000
H = 1_796_198_400_000  # a whole hour
NOW = H + 30 * MINUTE
TRACE = "d" * 32


def insert(conn: sqlite3.Connection, rows: list[dict[str, Any]]) -> list[int]:
    """Events received (and started) at their `at`; returns their ids."""
    ids = []
    start = buffer_size(conn)
    for i, row in enumerate(rows, start):
        cursor = conn.execute(
            "INSERT INTO events (uuid, event, ts_ms, received_ms, properties, agent, pid,"
            " transport, consent, upload, anonymous_id, daemon_version, trace_id, span_id)"
            " VALUES (?, ?, ?, ?, ?, 'planner', 1, 'http', 'local', 'local', 'anon', 'test',"
            " ?, ?)",
            (
                f"u-{i}",
                row["event"],
                row["at"],
                row["at"],
                json.dumps(row.get("properties", {})),
                row.get("trace_id"),
                row.get("span_id"),
            ),
        )
        ids.append(int(cursor.lastrowid or 0))
    return ids


def buffer_size(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT count(*) FROM events").fetchone()[0])


@pytest.fixture(params=["unfolded", "folded"])
def fold(request: pytest.FixtureRequest) -> bool:
    return bool(request.param == "folded")


@pytest.fixture
def buffer(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    conn = open_buffer(tmp_path / "buffer.sqlite3")
    yield conn
    conn.close()


def folded(conn: sqlite3.Connection, fold: bool) -> None:
    if fold:
        dashboard_sql.fold_all(conn)
        analytics_fold.fold_all(conn)


def test_the_range_echoed_is_the_range_counted(buffer: sqlite3.Connection, fold: bool) -> None:
    """`since=24h` at half past an hour counts from the whole hour before: a run started
    24.01 hours ago is listed, and every view says its range starts at that hour."""
    started = NOW - 24 * HOUR - 36_000
    span = {"duration_ms": 5, "gen_ai.request.model": "gpt-4o"}
    insert(
        buffer,
        [
            {
                "event": "agent.run",
                "at": started,
                "properties": span,
                "trace_id": TRACE,
                "span_id": "1" * 16,
            }
        ],
    )
    folded(buffer, fold)
    f = Filters.from_query({"since": "24h", "until": str(NOW - 10 * MINUTE)}, NOW)
    summary = views.read_view("summary", buffer, f)
    runs = views.read_agent_view("runs", buffer, AgentQuery(f))
    assert summary["totals"]["events"] == 1
    assert [run["start_ms"] for run in runs["runs"]] == [started]
    for answer in (summary, runs, views.read_agent_view("models", buffer, AgentQuery(f))):
        assert answer["filters"]["since_ms"] == H - 24 * HOUR
        assert answer["filters"]["until_ms"] == H + HOUR


def test_the_tool_filter_selects_the_calls_the_tools_view_counts(
    buffer: sqlite3.Connection, fold: bool
) -> None:
    """grep called four times over OTLP, named by its span only (one call failed), and once
    from a shim by name; a metric point about grep is no call of it."""
    otlp = [
        {
            "event": "execute_tool grep",
            "at": H + i * MINUTE,
            "properties": {"gen_ai.operation.name": "execute_tool", "duration_ms": 20}
            | ({"status": "error"} if i == 0 else {}),
            "trace_id": TRACE,
            "span_id": f"{i + 1:016x}",
        }
        for i in range(4)
    ]
    shim = {"event": "tool.call", "at": H + 5 * MINUTE, "properties": {"gen_ai.tool.name": "grep"}}
    point = {
        "event": "tool.usage",
        "at": H + 6 * MINUTE,
        "properties": {"metric.type": "sum", "metric.value": 3, "gen_ai.tool.name": "grep"},
    }
    calls = insert(buffer, [*otlp, shim])
    insert(buffer, [point])
    folded(buffer, fold)
    q = AgentQuery(Filters(tool="grep"))
    tools = views.read_agent_view("tools", buffer, q)["tools"]
    assert [(t["tool"], t["calls"], t["errors"]) for t in tools] == [("grep", 5, 1)]
    listed = views.read_agent_view("explore", buffer, q)["events"]
    assert sorted(event["id"] for event in listed) == calls
