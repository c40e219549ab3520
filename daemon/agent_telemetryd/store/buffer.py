"""The buffer as the daemon holds it: the file, its writer, a reader thread, a checkpointer.

Opening checks the file before anything uses it: a WAL that is not the buffer's is moved
aside (store/wal_identity.py), then `PRAGMA quick_check` reads every page. A file up to
`INLINE_CHECK_BYTES` is checked before the writer starts (about 45 ms for 16 MiB on a warm
cache); a larger one after, on a thread of its own, so a large buffer does not delay the
first event taken (2,000,000 events, 667 MB, take 1.8 s to check warm; from a cold disk it
is the time to read the file). The check gives up after `CHECK_SECONDS` and says so. What
it finds corrupt is moved aside as if the writer had met it (store/writer.py `heal`).
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from agent_telemetryd.lazy_log import get_logger
from agent_telemetryd.store import fresh, queries
from agent_telemetryd.store.buffer_file import BufferFile
from agent_telemetryd.store.checkpoint import Checkpointer
from agent_telemetryd.store.database import (
    connect,
    guard_wal,
    is_corrupt,
    is_full,
    open_buffer,
    quick_check,
)
from agent_telemetryd.store.reserve import SpaceReserve
from agent_telemetryd.store.writer import Writer

log = get_logger("agent_telemetryd.store")
T = TypeVar("T")
RETENTION_EVERY_SECONDS = 3600.0
INLINE_CHECK_BYTES = 16 * 1024 * 1024
CHECK_SECONDS = 60.0
# Rows a retention step deletes; on a full disk, steps shrink down to the last size.
PURGE_STEPS = (50_000, 2_000, 100, 10)


class Buffer:
    """Open with `await Buffer.open(...)`; every write goes through `writer`."""

    def __init__(self, path: Path, writer: Writer, anonymous_id: str, retention_days: int) -> None:
        self.path = path
        self.writer = writer
        self.anonymous_id = anonymous_id
        writer.file.anonymous_id = anonymous_id
        self._retention_days = retention_days
        self._reader_executor = ThreadPoolExecutor(1, thread_name_prefix="buffer-reader")
        self._reader: sqlite3.Connection | None = None
        self._reader_generation = 0
        self._retention_task: asyncio.Task[None] | None = None
        self._check_task: asyncio.Task[None] | None = None

    @classmethod
    async def open(
        cls, path: Path, *, max_events: int, max_bytes: int, retention_days: int
    ) -> Buffer:
        def setup() -> tuple[BufferFile, str, bool]:
            checked = _check_small_file(path)
            conn = open_buffer(path, autocheckpoint=False)
            conn.execute("BEGIN IMMEDIATE")
            anonymous_id = queries.ensure_anonymous_id(conn)
            conn.execute("COMMIT")
            reserve = SpaceReserve(path.parent)
            reserve.ensure()
            file = BufferFile(path, conn, reserve=reserve, checkpointer=Checkpointer(path))
            return file, anonymous_id, checked

        file, anonymous_id, checked = await asyncio.to_thread(setup)
        buffer: Buffer | None = None

        async def before_replace() -> None:
            assert buffer is not None
            await buffer._let_go_of_file()

        writer = Writer(
            file, max_events=max_events, max_bytes=max_bytes, before_replace=before_replace
        )
        writer.start()
        buffer = cls(path, writer, anonymous_id, retention_days)
        loop = asyncio.get_running_loop()
        buffer._retention_task = loop.create_task(buffer._retention_loop(), name="retention")
        if not checked:
            buffer._check_task = loop.create_task(buffer._check_in_background(), name="check")
        return buffer

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run a query on the reader thread; it never waits for the writer (WAL).

        A corrupt file met here is healed like one the writer meets, and the query runs
        once more, on the fresh file.
        """
        generation = self.writer.generation
        try:
            return await self._read_once(fn)
        except sqlite3.DatabaseError as error:
            if not is_corrupt(error):
                raise
            await self.writer.heal(generation, f"a read met it: {error}")
        return await self._read_once(fn)

    async def _read_once(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        generation = self.writer.generation

        def call() -> T:
            if self._reader is not None and self._reader_generation != generation:
                self._close_reader()
            if self._reader is None:
                self._reader = connect(self.path, readonly=True)
                self._reader_generation = generation
            return fn(self._reader)

        return await asyncio.get_running_loop().run_in_executor(self._reader_executor, call)

    def _close_reader(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            with contextlib.suppress(sqlite3.Error):
                reader.close()

    async def _let_go_of_file(self) -> None:
        """Before the writer replaces the file: the reader and the checkpointer close theirs."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._reader_executor, self._close_reader)
        checkpointer = self.writer.file.checkpointer
        if checkpointer is not None:
            await asyncio.to_thread(checkpointer.reset)

    async def clear(self) -> int:
        """Every event gone, from the disk too: a fresh file replaces this one."""
        replaced = await self.writer.replace_with_fresh("clear")
        log.info("buffer_cleared", events_deleted=replaced.events)
        return replaced.events

    async def reset_anonymous_id(self) -> str:
        self.anonymous_id = await self.writer.run(queries.reset_anonymous_id)
        self.writer.file.anonymous_id = self.anonymous_id
        return self.anonymous_id

    async def purge_expired(self, now: float | None = None) -> int:
        cutoff_ms = int(((now or time.time()) - self._retention_days * 86400) * 1000)
        total = 0
        step = 0
        while True:
            limit = PURGE_STEPS[step]
            try:
                deleted = await self.writer.run(
                    lambda c, n=limit: queries.purge_older_than(c, cutoff_ms, n), frees_space=True
                )
            except sqlite3.OperationalError as error:
                # A full disk: fewer rows a step need fewer WAL pages.
                if not is_full(error) or step + 1 == len(PURGE_STEPS):
                    raise
                step += 1
                continue
            total += deleted
            if deleted == 0:
                break
        if total:
            log.info("retention_purged", events_deleted=total, days=self._retention_days)
        return total

    async def _retention_loop(self) -> None:
        # One timer an hour, not a poll: the daemon sleeps between purges.
        while True:
            try:
                await self.purge_expired()
            except sqlite3.Error as error:
                log.error("retention_failed", reason=str(error))
            await asyncio.sleep(RETENTION_EVERY_SECONDS)

    async def _check_in_background(self) -> None:
        generation = self.writer.generation
        started = time.monotonic()
        result = await asyncio.to_thread(quick_check, self.path, CHECK_SECONDS)
        seconds = round(time.monotonic() - started, 1)
        if result.state == "corrupt":
            await self.writer.heal(generation, "; ".join(result.messages) or "quick_check")
        elif result.state == "unfinished":
            log.warning("buffer_check_unfinished", path=str(self.path), seconds=seconds)
        elif result.state == "unreadable":
            log.warning("buffer_check_failed", path=str(self.path), reason=result.messages)

    async def close(self) -> None:
        for task in (self._retention_task, self._check_task):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        await self.writer.close()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._reader_executor, self._close_reader)
        self._reader_executor.shutdown(wait=True)
        checkpointer = self.writer.file.checkpointer
        if checkpointer is not None:
            await asyncio.to_thread(checkpointer.close)
        # Last: the writer's connection is the last one, so SQLite folds the WAL back in.
        self.writer.file.close()


def _check_small_file(path: Path) -> bool:
    """Check a small buffer file before it is used; True when it was (False: too large,
    the check runs in the background). A corrupt one is replaced by a fresh file holding
    what could still be read of its ids, the old one kept aside."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return True  # nothing to check: a new buffer
    if size > INLINE_CHECK_BYTES:
        return False
    guard_wal(path)  # a foreign WAL must not be what the check reads
    result = quick_check(path, CHECK_SECONDS)
    if result.state != "corrupt":
        return result.state != "unfinished"
    carry = fresh.salvage_carry(path)
    kept = fresh.put_in_place(path, fresh.build(path, carry), keep_old_as="corrupt")
    log.error(
        "buffer_corrupt_moved_aside",
        reason="; ".join(result.messages),
        moved_to=str(kept),
        unreadable=carry.unreadable,
        action="started a fresh buffer",
    )
    return True
