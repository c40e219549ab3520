"""What retention and eviction leave behind: nothing of the events they delete."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from pathlib import Path

import pytest

from agent_telemetryd.store import analytics_fold, dashboard_sql, migrations
from agent_telemetryd.store.analytics_schema import METRIC_SERIES_FOLLOW_THEIR_POINTS
from agent_telemetryd.store.buffer import Buffer
from agent_telemetryd.store.migrations import MIGRATIONS, _statements
from agent_telemetryd.store.rows import EventRow

DAY_MS = 86_400_000
SECRET = "acme-corp-contract"  # a label only the old events carry


def _row(number: int, received_ms: int, event: str, properties: dict[str, object]) -> EventRow:
    return EventRow(
        f"00000000-0000-7000-8000-{number:012d}", event, received_ms, received_ms,
        json.dumps(properties), "old-agent", None, "otlp", "local", "local", "id", "t",
        f"{number:032x}", f"{number:016x}", None,
    )  # fmt: skip


def _cells_holding(conn: sqlite3.Connection, text: str) -> list[str]:
    """`table.column` of every text cell in the file that contains `text`."""
    found = []
    tables = [name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    for table in tables:
        columns = [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]
        for column in columns:
            hit = conn.execute(
                f"SELECT 1 FROM {table} WHERE typeof({column}) = 'text'"
                f" AND instr({column}, ?) > 0 LIMIT 1",
                (text,),
            ).fetchone()
            if hit:
                found.append(f"{table}.{column}")
    return found


def test_retention_leaves_nothing_of_the_metric_points_it_purges(tmp_path: Path) -> None:
    """Metric points, an LLM call and a span received 100 days ago, folded into the
    dashboard's rollups, then purged by retention (90 days): no table of the buffer still
    holds their names, agent or attributes."""
    now_ms = int(time.time() * 1000)
    old_ms = now_ms - 100 * DAY_MS
    rows = [
        _row(1, old_ms, "queue.depth", {"metric.type": "gauge", "metric.value": 3,
                                        "customer": SECRET}),
        _row(2, old_ms + 1, "tokens.used", {"metric.type": "sum", "metric.value": 9,
                                            "metric.temporality": "delta", "customer": SECRET}),
        _row(3, old_ms + 2, "chat", {"gen_ai.request.model": "gpt-4o", "customer": SECRET,
                                     "gen_ai.usage.input_tokens": 10}),
    ]  # fmt: skip

    path = tmp_path / "buffer.sqlite3"

    async def fill() -> int:
        # Kept for a century while they go in and are folded: nothing expires yet.
        buffer = await Buffer.open(path, max_events=1000, max_bytes=10**9, retention_days=36500)
        try:
            ack = buffer.writer.submit(rows, {"received": len(rows)}, ack=True)
            assert ack is not None
            await ack
            for fold in (dashboard_sql.fold, analytics_fold.fold):
                await buffer.writer.run(fold)
            return await buffer.read(
                lambda c: c.execute("SELECT count(*) FROM agent_metric_series").fetchone()[0]
            )
        finally:
            await buffer.close()

    async def purge() -> tuple[int, list[str], list[str]]:
        buffer = await Buffer.open(path, max_events=1000, max_bytes=10**9, retention_days=90)
        try:
            await buffer.purge_expired()  # the one run at open may be the one that did it
            left = await buffer.read(
                lambda c: c.execute("SELECT count(*) FROM events").fetchone()[0]
            )
            secret = await buffer.read(lambda c: _cells_holding(c, SECRET))
            agent = await buffer.read(lambda c: _cells_holding(c, "old-agent"))
            return left, secret, agent
        finally:
            await buffer.close()

    assert asyncio.run(fill()) == 2, "the metric points were not folded"
    left, secret, agent = asyncio.run(purge())
    assert left == 0
    assert secret == [] and agent == []


def test_an_older_buffer_loses_the_series_it_kept_after_their_points(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A buffer from before series followed their points keeps a series whose points are
    gone; the upgrade deletes it and keeps the series that still have points. (Up to that
    migration: a later one folds every series again from the events.)"""
    conn = sqlite3.connect(tmp_path / "buffer.sqlite3", isolation_level=None)
    before = MIGRATIONS.index(METRIC_SERIES_FOLLOW_THEIR_POINTS)
    for step in MIGRATIONS[:before]:
        if callable(step):
            step(conn)
        else:
            for statement in _statements(step):
                conn.execute(statement)
    conn.execute(f"PRAGMA user_version = {before}")
    conn.executemany(
        "INSERT INTO agent_metric_series (id, name, agent, attributes) VALUES (?, ?, ?, ?)",
        [(1, "queue.depth", "old-agent", json.dumps({"customer": SECRET})),
         (2, "queue.depth", "new-agent", "{}")],
    )  # fmt: skip
    conn.execute(
        "INSERT INTO agent_metric_hours (series, hour, points, total, total_count, last_ms)"
        " VALUES (2, 1, 1, 3.0, 0, 0)"
    )
    with monkeypatch.context() as upto:
        upto.setattr(migrations, "MIGRATIONS", MIGRATIONS[: before + 1])
        upto.setattr(migrations, "SCHEMA_VERSION", before + 1)
        migrations.migrate(conn)
    assert conn.execute("SELECT id FROM agent_metric_series").fetchall() == [(2,)]
    assert _cells_holding(conn, SECRET) == []
