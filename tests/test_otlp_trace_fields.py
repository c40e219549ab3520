"""The trace context on the wire: `trace_id`, `span_id`, `parent_span_id` are checked, kept
in their own columns, and exported beside the event; events without them are unchanged."""

from __future__ import annotations

import sqlite3

import pytest

from agent_telemetryd.events import EventError, Limits, validate
from agent_telemetryd.store.migrations import MIGRATIONS, _statements, migrate
from tests.daemon_process import DaemonProcess
from tests.test_daemon_ingest import post_events

LIMITS = Limits()
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"
PARENT = "53995c3f42cd8ad8"


def test_a_span_event_keeps_its_three_ids() -> None:
    event = validate(
        {"event": "tool.call", "trace_id": TRACE, "span_id": SPAN, "parent_span_id": PARENT},
        LIMITS,
    )
    assert (event.trace_id, event.span_id, event.parent_span_id) == (TRACE, SPAN, PARENT)


def test_an_event_without_ids_has_none() -> None:
    event = validate({"event": "agent.run"}, LIMITS)
    assert (event.trace_id, event.span_id, event.parent_span_id) == (None, None, None)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"trace_id": TRACE[:-1]}, "'trace_id' must be 32 lowercase hex digits"),
        ({"trace_id": TRACE.upper()}, "'trace_id' must be 32 lowercase hex digits"),
        ({"trace_id": "0" * 32}, "not all zero"),
        ({"trace_id": 7}, "'trace_id' must be a string, not a number"),
        ({"trace_id": TRACE, "span_id": "xyz"}, "'span_id' must be 16 lowercase hex digits"),
        ({"trace_id": TRACE, "span_id": "0" * 16}, "'span_id' must be 16"),
        ({"trace_id": TRACE, "parent_span_id": SPAN + "00"}, "'parent_span_id' must be 16"),
        ({"span_id": SPAN}, "needs 'trace_id' too"),
    ],
)
def test_bad_ids_are_refused_with_the_field_named(fields: dict, message: str) -> None:
    with pytest.raises(EventError, match=message):
        validate({"event": "e", **fields}, LIMITS)


def test_a_buffer_of_the_previous_schema_gains_the_columns_with_its_rows_kept() -> None:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    previous = 6  # the version before migration 7 added the trace columns
    for script in MIGRATIONS[:previous]:
        for statement in _statements(script):
            conn.execute(statement)
    conn.execute(f"PRAGMA user_version = {previous}")
    conn.execute(
        "INSERT INTO events (uuid, event, ts_ms, received_ms, properties, agent, transport,"
        " consent, upload, anonymous_id, daemon_version)"
        " VALUES ('u1', 'old', 1, 1, '{}', 'a', 'unix', 'local', 'local', '', '0')"
    )
    assert migrate(conn) == len(MIGRATIONS)
    row = conn.execute("SELECT event, trace_id, span_id, parent_span_id FROM events").fetchone()
    assert row == ("old", None, None, None)


def test_ids_posted_over_http_come_back_in_export(daemon: DaemonProcess) -> None:
    status, body = post_events(
        daemon.http_url(),
        [
            {"event": "root", "trace_id": TRACE, "span_id": PARENT},
            {"event": "child", "trace_id": TRACE, "span_id": SPAN, "parent_span_id": PARENT},
            {"event": "plain"},
            {"event": "bad", "trace_id": "nope"},
        ],
    )
    assert status == 202 and body["accepted"] == 3
    assert "'trace_id'" in body["rejected"][0]["reason"]
    rows = {row["event"]: row for row in daemon.export()}
    assert (rows["root"]["trace_id"], rows["root"]["span_id"]) == (TRACE, PARENT)
    assert rows["root"]["parent_span_id"] is None
    assert (rows["child"]["span_id"], rows["child"]["parent_span_id"]) == (SPAN, PARENT)
    assert rows["plain"]["trace_id"] is None
    csv_header = daemon.cli("export", "--format", "csv").stdout.splitlines()[0]
    assert csv_header.endswith(",trace_id,span_id,parent_span_id")
