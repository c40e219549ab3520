"""The writer's group commits for an agent that sends now and then: a row or two nobody
waits for waits a moment for others to share its commit, a request someone waits for
ends that wait or keeps it from starting, a turn's rows (many, or a few gathered over a
read turn) never wait and end such a wait, and a failed commit nobody waits for is
counted at once. Counted on a real buffer file through SQLite's own statement trace (each
COMMIT the writer's connection runs)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest

from agent_telemetryd.store import writer as writer_module
from agent_telemetryd.store.buffer import Buffer
from agent_telemetryd.store.writer import FEW_ROWS, StoreFullError, Writer
from tests.test_ingest_turns import until
from tests.test_store_failures import buffer_row

T = TypeVar("T")
LONG_WAIT = 60.0  # longer than any test here may take: a row still waiting shows it


def with_writer(tmp_path: Path, scenario: Callable[[Writer, list[str]], Awaitable[T]]) -> T:
    """Run `scenario` with a fresh buffer's writer and the list of COMMITs it runs."""

    async def run() -> T:
        buffer = await Buffer.open(
            tmp_path / "b.sqlite3", max_events=1000, max_bytes=10**9, retention_days=90
        )
        try:
            # The buffer's own first job (retention, at open) done: nothing else comes.
            await asyncio.sleep(0.2)
            await buffer.writer.run(lambda conn: None)
            commits: list[str] = []
            buffer.writer.connection.set_trace_callback(
                lambda sql: commits.append(sql) if sql == "COMMIT" else None
            )
            return await scenario(buffer.writer, commits)
        finally:
            await buffer.close()

    return asyncio.run(run())


def stored(writer: Writer) -> int:
    return int(writer.connection.execute("SELECT count(*) FROM events").fetchone()[0])


@pytest.mark.parametrize("company", ["a request with an ack", "rows a read turn gathered"])
def test_lone_rows_share_a_commit_which_the_next_request_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, company: str
) -> None:
    monkeypatch.setattr(writer_module, "FEW_ROWS_WAIT", LONG_WAIT)

    async def scenario(writer: Writer, commits: list[str]) -> tuple[int, int, int]:
        writer.submit([buffer_row(1, 1)], {"received": 1}, ack=False)
        await asyncio.sleep(0.3)
        writer.submit([buffer_row(2, 1)], {"received": 1}, ack=False)
        await asyncio.sleep(0.3)
        waiting = len(commits)  # 0: both rows wait for company
        if company == "a request with an ack":
            acked = writer.submit([buffer_row(3, 1)], {"received": 1}, ack=True)
            assert acked is not None
            await asyncio.wait_for(acked, 30)  # long before LONG_WAIT
        else:  # a turn's rows had their wait: they are the company
            writer.submit([buffer_row(3, 1)], {"received": 1}, ack=False, gathered=True)
            await until(lambda: len(commits) == 1, "all three committed")
        return waiting, len(commits), stored(writer)

    waiting, commits, rows = with_writer(tmp_path, scenario)
    assert (waiting, commits, rows) == (0, 1, 3)


def test_a_request_with_an_ack_queued_behind_lone_rows_does_not_wait(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writer_module, "FEW_ROWS_WAIT", LONG_WAIT)

    async def scenario(writer: Writer, commits: list[str]) -> tuple[int, int]:
        # Both queued before the writer looks: the ack is there before any wait begins.
        writer.submit([buffer_row(1, 1)], {"received": 1}, ack=False)
        acked = writer.submit([buffer_row(2, 1)], {"received": 1}, ack=True)
        assert acked is not None
        await asyncio.wait_for(acked, 30)  # long before LONG_WAIT
        return len(commits), stored(writer)

    assert with_writer(tmp_path, scenario) == (1, 2)


def test_a_turns_rows_are_committed_without_waiting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writer_module, "FEW_ROWS_WAIT", LONG_WAIT)

    async def scenario(writer: Writer, commits: list[str]) -> tuple[int, int]:
        rows = [buffer_row(n, 1) for n in range(FEW_ROWS)]
        writer.submit(rows, {"received": len(rows)}, ack=False)
        await until(lambda: len(commits) == 1, "the turn's rows committed")
        return len(commits), stored(writer)

    assert with_writer(tmp_path, scenario) == (1, FEW_ROWS)


def test_a_few_rows_gathered_over_a_read_turn_are_committed_without_waiting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Several agents' lone lines read together on a turn: they had their wait already.
    monkeypatch.setattr(writer_module, "FEW_ROWS_WAIT", LONG_WAIT)

    async def scenario(writer: Writer, commits: list[str]) -> tuple[int, int]:
        rows = [buffer_row(n, 1) for n in range(FEW_ROWS - 2)]
        writer.submit(rows, {"received": len(rows)}, ack=False, gathered=True)
        await until(lambda: len(commits) == 1, "the gathered rows committed")
        return len(commits), stored(writer)

    assert with_writer(tmp_path, scenario) == (1, FEW_ROWS - 2)


def test_a_failed_commit_nobody_waits_for_is_counted_without_another_write(
    tmp_path: Path,
) -> None:
    # ingest.sock's rows have no ack, so the loop is not woken when their commit ends; when
    # it fails, it is, and the loss is counted then, not at the next write.
    async def scenario(writer: Writer, commits: list[str]) -> tuple[int, int]:
        row = buffer_row(1, 1)
        assert writer.submit([row[:-1]], {"received": 1}, ack=False) is None
        await until(lambda: bool(writer.unsaved.get("dropped.write_error")), "the loss counted")
        lost = writer.unsaved["dropped.write_error"]
        ok = writer.submit([row], {"received": 1}, ack=True)
        assert ok is not None
        return (await ok).inserted, lost

    assert with_writer(tmp_path, scenario) == (1, 1)


def test_a_commit_failing_in_an_unforeseen_way_loses_its_group_not_the_writer(
    tmp_path: Path,
) -> None:
    # A value SQLite cannot bind (a lone surrogate: text that is not UTF-8) raises no
    # sqlite3.Error. The group is lost and counted, its sender told; the next one is kept.
    async def scenario(writer: Writer, commits: list[str]) -> tuple[str, int, int]:
        bad = buffer_row(1, 1)._replace(agent="M\udcfcller")
        refused = writer.submit([bad], {"received": 1}, ack=True)
        assert refused is not None
        with pytest.raises(StoreFullError) as error:
            await asyncio.wait_for(refused, 10)
        lost = writer.unsaved["dropped.write_error"]
        ok = writer.submit([buffer_row(2, 2)], {"received": 1}, ack=True)
        assert ok is not None
        inserted = (await asyncio.wait_for(ok, 10)).inserted
        return str(error.value), lost, inserted

    reason, lost, inserted = with_writer(tmp_path, scenario)
    assert (reason, lost, inserted) == ("buffer write failed: UnicodeEncodeError", 1, 1)
