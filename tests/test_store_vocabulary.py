"""The store's vocabulary agrees with the schema the migrations build."""

from __future__ import annotations

import re
from pathlib import Path

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
        " transport, consent, upload, anonymous_id, daemon_version, eligible_ms)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    )


def test_upload_states_are_the_ones_the_schema_allows(tmp_path: Path) -> None:
    conn = open_buffer(tmp_path / "buffer.sqlite3")
    (schema,) = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'events'").fetchone()
    conn.close()
    allowed = re.search(r"CHECK \(upload IN \(([^)]*)\)\)", schema)
    assert allowed is not None
    assert [v.strip(" '") for v in allowed.group(1).split(",")] == [s.value for s in UploadState]
