"""The store's vocabulary agrees with the schema the migrations build."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

from agent_telemetryd import __version__
from agent_telemetryd.events import Limits
from agent_telemetryd.ingest import Ingestor, Source
from agent_telemetryd.store.buffer import Buffer
from agent_telemetryd.store.database import open_buffer
from agent_telemetryd.store.rows import INSERT_EVENT, EventRow, UploadState


def test_event_row_names_every_column_an_insert_fills(tmp_path: Path) -> None:
    conn = open_buffer(tmp_path / "buffer.sqlite3")
    columns = [row[1] for row in conn.execute("PRAGMA table_info(events)")]
    conn.close()
    # `id` is SQLite's; `quarantine_reason` is set only when the backend refuses an event.
    assert [c for c in columns if c not in ("id", "quarantine_reason")] == list(EventRow._fields)
    assert INSERT_EVENT == (
        "INSERT OR IGNORE INTO events (uuid, event, ts_ms, received_ms, properties, agent, pid,"
        " transport, consent, upload, anonymous_id, daemon_version, trace_id, span_id,"
        " parent_span_id, eligible_ms)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    )


def test_upload_states_are_the_ones_the_schema_allows(tmp_path: Path) -> None:
    conn = open_buffer(tmp_path / "buffer.sqlite3")
    (schema,) = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'events'").fetchone()
    conn.close()
    allowed = re.search(r"CHECK \((upload = '[a-z_]+'(?: OR )?)+\)", schema)
    assert allowed is not None
    assert re.findall(r"upload = '([a-z_]+)'", allowed.group(0)) == [s.value for s in UploadState]


async def test_every_field_of_an_event_lands_in_its_column(tmp_path: Path) -> None:
    """Ingest builds rows by position, in EventRow's order: each value reaches the
    column of its name, read back from the file."""
    buffer = await Buffer.open(
        tmp_path / "buffer.sqlite3", max_events=1000, max_bytes=10**9, retention_days=90
    )
    try:
        ingestor = Ingestor(
            limits=Limits(),
            mode=lambda: "upload",
            writer=lambda: buffer.writer,
            anonymous_id=lambda: buffer.anonymous_id,
            clock=lambda: 1_800_000_000.5,
        )
        document = {
            "event": "tool.call",
            "uuid": "0190f0a0-0000-7000-8000-000000000001",
            "timestamp": "2026-11-24T21:00:00.123Z",
            "agent": "planner",
            "properties": {"k": "v"},
        }
        outcome = ingestor.accept_documents([document], Source("http", pid=4242), ack=True)
        assert outcome.pending is not None
        assert (await outcome.pending).inserted == 1
        columns = ", ".join(EventRow._fields)
        row = await buffer.read(
            lambda conn: conn.execute(f"SELECT {columns} FROM events").fetchone()
        )
    finally:
        await buffer.close()
    sent_at = datetime(2026, 11, 24, 21, 0, 0, 123000, tzinfo=UTC)
    assert EventRow(*row) == EventRow(
        uuid="0190f0a0-0000-7000-8000-000000000001",
        event="tool.call",
        ts_ms=int(sent_at.timestamp() * 1000),
        received_ms=1_800_000_000_500,
        properties='{"k":"v"}',
        agent="planner",
        pid=4242,
        transport="http",
        consent="upload",
        upload="pending",
        anonymous_id=buffer.anonymous_id,
        daemon_version=__version__,
    )
