"""The writer's group insert stores exactly what one INSERT a row would, in arrival order."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from agent_telemetryd.store.buffer import Buffer
from agent_telemetryd.store.database import open_buffer
from agent_telemetryd.store.rows import INSERT_EVENT, EventRow
from agent_telemetryd.store.write_requests import WriteResult

COLUMNS = ", ".join(EventRow._fields)


def row(number: int, *, traced: bool = False, waits: bool = False, via: str = "unix") -> EventRow:
    """Row `number`: a plain event, a span with trace context, or one the limit held back;
    `via` another transport (and another daemon version and id, as after an upgrade)."""
    uuid = f"00000000-0000-7000-8000-{number:012d}"
    ms = 1_700_000_000_000 + number
    pid = None if number % 5 == 0 else 4000 + number
    properties = f'{{"n": {number}, "text": "é\\u0000 {number}"}}'
    return EventRow(
        uuid, f"event.{number % 3}", ms, ms + 1, properties, f"agent-{number % 2}", pid,
        via, "local", "pending" if waits else "local",
        "anon" if via == "unix" else "anon-2", "1.0" if via == "unix" else "1.1",
        f"{number:032x}" if traced else None,
        f"{number:016x}" if traced else None,
        f"{number + 1:016x}" if traced and number % 2 else None,
        ms + 60_000 if waits else None,
    )  # fmt: skip


def mixed_group() -> list[EventRow]:
    """84 rows (more than one statement's worth, not a power of two): runs of plain rows
    between traced and waiting ones, rows that came in otherwise (their transport, id and
    version are bound once a run), and uuids repeated inside the group."""
    rows = [row(n, traced=n % 11 in (4, 5), waits=n % 17 == 9) for n in range(70)]
    rows += [row(3), row(70), row(70), row(71, traced=True), row(72), row(73), row(74)]
    rows += [row(75, via="http"), row(76, via="http", traced=True), row(77, via="http")]
    rows += [row(78), row(79, via="http"), row(80, via="otlp", traced=True), row(81)]
    return rows


async def open_at(tmp_path: Path, max_events: int = 1000) -> Buffer:
    return await Buffer.open(
        tmp_path / "b.sqlite3", max_events=max_events, max_bytes=10**9, retention_days=9999
    )


def stored(path: Path) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(f"SELECT id, {COLUMNS} FROM events ORDER BY id").fetchall()
    finally:
        conn.close()


def test_a_group_is_stored_as_one_insert_a_row_stores_it(tmp_path: Path) -> None:
    group = mixed_group()

    # What one INSERT a row stores: the reference.
    reference = tmp_path / "reference.sqlite3"
    conn = open_buffer(reference)
    conn.execute("BEGIN IMMEDIATE")
    conn.execute(INSERT_EVENT, tuple(row(3)))
    for one in group:
        conn.execute(INSERT_EVENT, tuple(one))
    conn.execute("COMMIT")
    conn.close()

    async def through_the_writer() -> tuple[WriteResult, WriteResult]:
        buffer = await open_at(tmp_path)
        try:
            first = buffer.writer.submit([row(3)], {"received": 1}, ack=True)
            second = buffer.writer.submit(group, {"received": len(group)}, ack=True)
            assert first is not None and second is not None
            return await first, await second
        finally:
            await buffer.close()

    first, second = asyncio.run(through_the_writer())
    assert (first.inserted, first.duplicates) == (1, 0)
    # Row 3 was stored already and comes twice in the group; row 70 comes twice.
    assert (second.inserted, second.duplicates) == (len(group) - 3, 3)
    rows = stored(tmp_path / "b.sqlite3")
    assert rows == stored(reference)
    # Ids follow arrival; the trace columns and eligible_ms are NULL where they were None.
    assert [r[1][-3:] for r in rows[:5]] == ["003", "000", "001", "002", "004"]
    assert rows[4][13:] == (f"{4:032x}", f"{4:016x}", None, None)
    assert rows[5][13:] == (f"{5:032x}", f"{5:016x}", f"{6:016x}", None)
    assert rows[9][13:] == (None, None, None, 1_700_000_000_009 + 60_000)
    # Each row keeps how it came in, in a group where that changes from row to row.
    assert [(r[1][-3:], r[8], r[11], r[12], r[13] is None) for r in rows[-7:]] == [
        ("075", "http", "anon-2", "1.1", True),
        ("076", "http", "anon-2", "1.1", False),
        ("077", "http", "anon-2", "1.1", True),
        ("078", "unix", "anon", "1.0", True),
        ("079", "http", "anon-2", "1.1", True),
        ("080", "otlp", "anon-2", "1.1", False),
        ("081", "unix", "anon", "1.0", True),
    ]


@pytest.mark.parametrize("bad", [lambda r: r[:-1], lambda r: (*r, None)])
def test_a_row_of_the_wrong_length_fails_the_group_instead_of_shifting_columns(
    tmp_path: Path, bad: object
) -> None:
    async def scenario() -> list[tuple[object, ...]]:
        buffer = await open_at(tmp_path)
        try:
            # Among rows of the same kind: one statement would take all three.
            rows = [row(1, traced=True), bad(row(2, traced=True)), row(3, traced=True)]  # type: ignore[operator]
            failed = buffer.writer.submit(rows, {"received": 3}, ack=True)
            assert failed is not None
            with pytest.raises(Exception, match="buffer write failed"):
                await failed
            return []
        finally:
            await buffer.close()

    asyncio.run(scenario())
    assert stored(tmp_path / "b.sqlite3") == []


def counters(path: Path) -> dict[str, int]:
    conn = sqlite3.connect(path)
    try:
        return dict(conn.execute("SELECT name, value FROM counters WHERE value != 0").fetchall())
    finally:
        conn.close()


def test_requests_nobody_waits_for_go_in_together_and_each_row_is_counted_once(
    tmp_path: Path,
) -> None:
    """A busy turn's reads (nobody waits for them) and an HTTP request (which waits for its
    own counts) in one group: ids follow arrival, a uuid seen before is a duplicate
    wherever it came, and the waiting request is told about its own rows only."""

    async def scenario() -> WriteResult:
        buffer = await open_at(tmp_path)
        try:
            writer = buffer.writer
            writer.submit([row(1), row(2)], {"received": 2}, ack=False)
            writer.submit([row(3), row(1, traced=True)], {"received": 2}, ack=False)
            waited = writer.submit([row(4), row(2)], {"received": 2}, ack=True)
            writer.submit([row(6), row(5), row(6)], {"received": 3}, ack=False)
            assert waited is not None
            return await waited
        finally:
            await buffer.close()

    result = asyncio.run(scenario())
    assert (result.inserted, result.duplicates, result.refused) == (1, 1, 0)
    path = tmp_path / "b.sqlite3"
    assert [r[1][-3:] for r in stored(path)] == ["001", "002", "003", "004", "006", "005"]
    assert counters(path) == {"received": 9, "stored": 6, "dropped.duplicate": 3}


def test_at_the_cap_a_group_goes_request_by_request_and_what_came_first_is_kept(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        buffer = await open_at(tmp_path, max_events=4)
        try:
            writer = buffer.writer
            writer.submit([row(1), row(2)], {"received": 2}, ack=False)
            writer.submit([row(3), row(4), row(5)], {"received": 3}, ack=False)
            last = writer.submit([row(6)], {"received": 1}, ack=True)
            assert last is not None
            assert (await last).refused_rows == (0,)
        finally:
            await buffer.close()

    asyncio.run(scenario())
    path = tmp_path / "b.sqlite3"
    assert [r[1][-3:] for r in stored(path)] == ["001", "002", "003", "004"]
    assert counters(path) == {"received": 6, "stored": 4, "dropped.buffer_full": 2}


def test_at_the_cap_a_retry_stores_what_is_missing_and_counts_the_rest_as_duplicates(
    tmp_path: Path,
) -> None:
    """A sender retrying a batch the full buffer took in part: the rows stored before are
    duplicates, so the room left goes to the rows that are missing, in order."""

    async def scenario() -> None:
        buffer = await open_at(tmp_path, max_events=4)
        try:
            first = buffer.writer.submit([row(1), row(2)], {"received": 2}, ack=True)
            assert first is not None and (await first).refused_rows == ()
            retry = buffer.writer.submit(
                [row(1), row(2), row(3), row(2), row(4), row(5)], {"received": 6}, ack=True
            )
            assert retry is not None
            result = await retry
            assert (result.inserted, result.duplicates, result.refused_rows) == (2, 3, (5,))
        finally:
            await buffer.close()

    asyncio.run(scenario())
    path = tmp_path / "b.sqlite3"
    assert [r[1][-3:] for r in stored(path)] == ["001", "002", "003", "004"]
    assert counters(path) == {
        "received": 8,
        "stored": 4,
        "dropped.duplicate": 3,
        "dropped.buffer_full": 1,
    }
