"""The buffer as the daemon holds it: the file, its writer, and a reader thread."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import structlog

from agent_telemetryd.store import queries
from agent_telemetryd.store.database import connect, open_buffer
from agent_telemetryd.store.writer import Writer

log = structlog.get_logger("agent_telemetryd.store")
T = TypeVar("T")
RETENTION_EVERY_SECONDS = 3600.0


class Buffer:
    """Open with `await Buffer.open(...)`; every write goes through `writer`."""

    def __init__(self, path: Path, writer: Writer, anonymous_id: str, retention_days: int) -> None:
        self.path = path
        self.writer = writer
        self.anonymous_id = anonymous_id
        self._retention_days = retention_days
        self._reader_executor = ThreadPoolExecutor(1, thread_name_prefix="buffer-reader")
        self._reader: sqlite3.Connection | None = None
        self._retention_task: asyncio.Task[None] | None = None

    @classmethod
    async def open(
        cls, path: Path, *, max_events: int, max_bytes: int, retention_days: int
    ) -> Buffer:
        def setup() -> tuple[sqlite3.Connection, str]:
            conn = open_buffer(path)
            conn.execute("BEGIN IMMEDIATE")
            anonymous_id = queries.ensure_anonymous_id(conn)
            conn.execute("COMMIT")
            return conn, anonymous_id

        conn, anonymous_id = await asyncio.to_thread(setup)
        writer = Writer(conn, max_events=max_events, max_bytes=max_bytes)
        writer.start()
        buffer = cls(path, writer, anonymous_id, retention_days)
        buffer._retention_task = asyncio.get_running_loop().create_task(
            buffer._retention_loop(), name="retention"
        )
        return buffer

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run a query on the reader thread; it never waits for the writer (WAL)."""

        def call() -> T:
            if self._reader is None:
                self._reader = connect(self.path, readonly=True)
            return fn(self._reader)

        return await asyncio.get_running_loop().run_in_executor(self._reader_executor, call)

    async def clear(self) -> int:
        deleted = await self.writer.run(queries.clear_events)
        await self.writer.run(queries.compact, transaction=False)
        log.info("buffer_cleared", events_deleted=deleted)
        return deleted

    async def reset_anonymous_id(self) -> str:
        self.anonymous_id = await self.writer.run(queries.reset_anonymous_id)
        return self.anonymous_id

    async def purge_expired(self, now: float | None = None) -> int:
        cutoff_ms = int(((now or time.time()) - self._retention_days * 86400) * 1000)
        total = 0
        while True:
            deleted = await self.writer.run(lambda c: queries.purge_older_than(c, cutoff_ms))
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

    async def close(self) -> None:
        if self._retention_task is not None:
            self._retention_task.cancel()
            await asyncio.gather(self._retention_task, return_exceptions=True)
        await self.writer.close()

        def shut() -> None:
            if self._reader is not None:
                self._reader.close()

        await asyncio.get_running_loop().run_in_executor(self._reader_executor, shut)
        self._reader_executor.shutdown(wait=True)
        self.writer.connection.close()
