"""The one writer: group commit of everything agents send, on a thread of its own.

Events arrive from many connections; each arrival becomes a `WriteRequest`. The writer
takes every request waiting at that moment and commits them in one transaction, so
the commit rate follows the disk, not the number of events. Other writes (marking
sent, clearing, retention) run on the same thread between commits, so the buffer
has exactly one writer and nobody waits on SQLite's lock.

aiosqlite would cost a thread hop per statement; a group commit is several
statements, so the whole transaction runs as one function on this thread instead
(store/group_commit.py: the rows within the buffer's caps, their counters and meta rows).

When SQLite says the file is corrupt (SQLITE_CORRUPT, SQLITE_NOTADB) — to this thread or
to a reader — the file is kept aside and a fresh one takes its place (`heal`), and what
failed is tried once more on it: the events queued at that moment go into the fresh
buffer, without a restart. When it says the disk is full, room is made (store/buffer_file.py)
and what failed is tried once more; only operations that free space may use the reserve.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from agent_telemetryd.lazy_log import get_logger
from agent_telemetryd.store.buffer_file import CLEAR, HEAL, BufferFile, Replaced
from agent_telemetryd.store.database import is_corrupt, is_full
from agent_telemetryd.store.group_commit import STORED, GroupCommit, counter, rollback
from agent_telemetryd.store.log_throttle import ThrottledCount

# INSERT_EVENT stays importable from here: the benches' anchor inserts with it row by row.
from agent_telemetryd.store.rows import INSERT_EVENT as INSERT_EVENT
from agent_telemetryd.store.rows import EventRow
from agent_telemetryd.store.write_requests import (
    STOP,
    BeforeReplace,
    Job,
    ReplaceRequest,
    StoreFullError,
    WriteRequest,
    WriteResult,
)

log = get_logger("agent_telemetryd.store")
T = TypeVar("T")

MAX_GROUP_EVENTS = 20_000
# Under a steady stream, committing every small arrival costs more than the rows in it: a
# transaction's fixed cost (the thread hop, BEGIN, the size check, COMMIT's WAL frames) is
# ~0.2 ms of CPU against ~10 µs a row. So a group commit starts at most this often; rows
# that arrive meanwhile wait for it, and an arrival after a quiet spell is committed at once.
# ingest.sock reads every 20 ms under load (READ_INTERVAL), so a turn's reads make one group;
# 10 ms here too cost the same CPU and ~10 ms more latency (a turn that came just after a
# group started waited for the next).
GROUP_INTERVAL = 0.005
# A group that would start with a few rows nobody waits for (an agent sending now and
# then, each read alone) waits this long for company first: at 100 events/s from four
# agents each such commit was a wake-up of the writer's thread for a row or two. Waiting
# took the daemon from 5.9-6.0% to 3.7-5.0% of a core there, for a send -> commit p99 of
# 22 ms instead of 12 (25 at 10 events/s, where company is rare). A turn's reads (under
# load tens of rows, or a few agents' lines gathered over the turn: they had their wait
# there) and a request with an ack do not wait, nor do rows with anything queued behind
# them, and either arriving meanwhile ends the wait.
FEW_ROWS = 4
FEW_ROWS_WAIT = 0.015
# Put on the queue from the writer's thread when a commit nobody awaited failed: the loop
# then handles the failure at once instead of at the next arrival.
_SETTLE = object()


class Writer:
    def __init__(
        self,
        file: BufferFile,
        *,
        max_events: int,
        max_bytes: int,
        before_replace: BeforeReplace | None = None,
    ) -> None:
        self._file = file
        self._group = GroupCommit(file, max_events=max_events, max_bytes=max_bytes)
        self._before_replace = before_replace
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="buffer-writer")
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._group_started = float("-inf")
        self._company: asyncio.Future[None] | None = None  # a few rows waiting for more
        # The last group commit when nobody waits for its end (no request in it has an ack):
        # the loop is not woken when it ends, only told when it failed, and it is settled
        # before whatever the writer does next.
        self._in_flight: tuple[Future[list[WriteResult | None]], list[WriteRequest]] | None = None
        # Events submitted and not yet taken into a commit: receivers that cannot make
        # their peers wait otherwise (ingest.sock) stop reading while it is high.
        self.queued_events = 0
        # A full disk fails every group commit: logged rarely (store/log_throttle.py).
        self._write_failures = ThrottledCount()

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = self._loop.create_task(self._run(), name="buffer-writer")

    def submit(
        self,
        rows: list[EventRow],
        counters: dict[str, int] | None = None,
        *,
        ack: bool,
        meta: dict[str, str] | None = None,
        gathered: bool = False,
    ) -> asyncio.Future[WriteResult] | None:
        """Queue rows for the next group commit; with `ack`, a future that resolves after it.
        `gathered`: the rows were gathered over a read turn, so a few of them do not wait
        for company (FEW_ROWS_WAIT) as a lone read's do; like a request with an ack, they
        end a wait under way (they are the company)."""
        future = asyncio.get_running_loop().create_future() if ack else None
        self._queue.put_nowait(WriteRequest(rows, counters or {}, future, meta or {}, gathered))
        if (ack or gathered) and self._company is not None and not self._company.done():
            self._company.set_result(None)
        self.queued_events += len(rows)
        return future

    @property
    def unsaved(self) -> dict[str, int]:
        """Counts that could not be written (the disk failed): status adds them in until
        the next group commit that succeeds writes them (store/group_commit.py)."""
        return self._group.unsaved

    @property
    def connection(self) -> sqlite3.Connection:
        return self._file.conn

    @property
    def file(self) -> BufferFile:
        return self._file

    @property
    def generation(self) -> int:
        """Which file the buffer is: it changes when `clear` or healing replaced it."""
        return self._file.generation

    async def run(
        self,
        fn: Callable[[sqlite3.Connection], T],
        *,
        transaction: bool = True,
        frees_space: bool = False,
    ) -> T:
        """Run `fn(conn)` on the writer thread, in order with the commits around it.

        `frees_space`: the job deletes (retention): on a full disk it may use the reserve.
        """
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(Job(fn, future, transaction, frees_space))
        return await future

    def run_soon(self, fn: Callable[[sqlite3.Connection], T]) -> asyncio.Future[T]:
        """`run`, queued at once: ahead of every write submitted after this returns, for a
        caller that may not await first (the rate limit, in the middle of an arrival)."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(Job(fn, future, True, False))
        return future

    async def replace_with_fresh(self, reason: str) -> Replaced:
        """`clear`: a fresh file in place of this one, keeping what store/fresh.py keeps."""
        future: asyncio.Future[Replaced | None] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(ReplaceRequest(CLEAR, reason, future))
        result = await future
        assert result is not None
        return result

    async def heal(self, generation: int, reason: str) -> None:
        """A reader met corruption in file `generation`: keep it aside and start fresh
        (nothing happens when that file was replaced meanwhile)."""
        future: asyncio.Future[Replaced | None] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(ReplaceRequest(HEAL, reason, future, generation))
        await future

    async def close(self) -> None:
        """Commit everything queued so far, then stop the thread."""
        if self._task is not None:
            self._queue.put_nowait(STOP)
            await self._task
            self._task = None
        self._executor.shutdown(wait=True)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        stopping = False
        while not stopping:
            item = await self._queue.get()
            await self._settle(loop)
            if item is _SETTLE:
                continue
            if isinstance(item, WriteRequest):
                await self._pace(loop, item)
            stopping = await self._run_items(loop, self._waiting_after(item))
        await self._settle(loop)
        if self.unsaved:
            # Counts still unsaved at shutdown (no commit succeeded since they were lost):
            # one more try, in a commit of their own, so a restart does not forget them.
            try:
                await loop.run_in_executor(self._executor, self._group.commit, [])
            except sqlite3.Error as error:
                log.error("buffer_counts_not_saved", reason=str(error), counts=self.unsaved)

    def _waiting_after(self, item: Any) -> list[Any]:
        """`item` and everything queued after it: what arrived while the last commit ran
        goes into this one (a running count: summing the group on every step made a long
        queue quadratic)."""
        items = [item]
        events = len(item.rows) if isinstance(item, WriteRequest) else 0
        while not self._queue.empty() and events < MAX_GROUP_EVENTS:
            item = self._queue.get_nowait()
            items.append(item)
            if isinstance(item, WriteRequest):
                events += len(item.rows)
        return items

    async def _run_items(self, loop: asyncio.AbstractEventLoop, items: list[Any]) -> bool:
        """The write requests among `items` in group commits, the other jobs in order
        between them; True when STOP was among them."""
        stopping = False
        group: list[WriteRequest] = []
        for item in items:
            if item is STOP:
                stopping = True
            elif isinstance(item, WriteRequest):
                group.append(item)
            elif item is not _SETTLE:
                if group:
                    await self._commit_group(loop, group)
                    group = []
                await self._settle(loop)
                if isinstance(item, ReplaceRequest):
                    await self._run_replace(loop, item)
                else:
                    await self._run_job(loop, item)
        if group:
            await self._commit_group(loop, group)
        return stopping

    async def _pace(self, loop: asyncio.AbstractEventLoop, first: WriteRequest) -> None:
        """Wait until GROUP_INTERVAL after the last group commit started, if it was that
        recent: what arrives meanwhile joins this group. A group of fewer than FEW_ROWS
        rows nobody waits for, with nothing queued behind them, first waits FEW_ROWS_WAIT
        or until a request with an ack, or rows a read turn gathered, come."""
        if (
            first.ack is None
            and not first.gathered
            and len(first.rows) < FEW_ROWS
            and self._queue.empty()
        ):
            company = self._company = loop.create_future()
            timer = loop.call_later(FEW_ROWS_WAIT, _resolve, company)
            try:
                await company
            finally:
                timer.cancel()
                self._company = None
        wait = self._group_started + GROUP_INTERVAL - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
        self._group_started = loop.time()

    async def _commit_group(
        self, loop: asyncio.AbstractEventLoop, group: list[WriteRequest]
    ) -> None:
        self.queued_events -= sum(len(request.rows) for request in group)
        commit = self._executor.submit(self._group.commit, group)
        if any(request.ack is not None for request in group):
            await self._settled(loop, commit, group)
            return
        # Nobody waits for this one (ingest.sock's rows): its end would only wake the loop
        # (the thread's call_soon_threadsafe, a wake-up and the GIL passed back and forth),
        # half the loop's wake-ups at 1,000 events/s. What arrives next settles it first;
        # by then it has ended, unless arrivals come faster than commits.
        self._in_flight = (commit, group)
        commit.add_done_callback(self._tell_failure)

    def _tell_failure(self, commit: Future[list[WriteResult | None]]) -> None:
        """When a commit nobody awaits ends (on the writer's thread, or on the loop's if it
        had ended already): wake the loop only if it failed, so the failure is handled now
        (`_settle`), not at the next arrival."""
        if commit.cancelled() or commit.exception() is not None:
            assert self._loop is not None
            with contextlib.suppress(RuntimeError):  # the loop closed: nobody to tell
                self._loop.call_soon_threadsafe(self._queue.put_nowait, _SETTLE)

    async def _settle(self, loop: asyncio.AbstractEventLoop) -> None:
        """Wait for the commit nobody awaited, if any, and handle its failure."""
        if self._in_flight is not None:
            commit, group = self._in_flight
            self._in_flight = None
            await self._settled(loop, commit, group)

    async def _settled(
        self,
        loop: asyncio.AbstractEventLoop,
        commit: Future[list[WriteResult | None]],
        group: list[WriteRequest],
    ) -> None:
        try:
            try:
                results = commit.result() if commit.done() else await asyncio.wrap_future(commit)
            except sqlite3.Error as error:
                # Once more after healing or making room: the group is not lost to either.
                # A group that evicts (the buffer at its caps) frees space: it may use the
                # reserve; one that only adds rows may not.
                evicting = self._group.evicting
                if not await self._recover(loop, error, frees_space=evicting):
                    raise
                results = await loop.run_in_executor(self._executor, self._group.commit, group)
                if evicting:
                    await loop.run_in_executor(self._executor, self._file.restore_reserve)
        except Exception as error:
            # Whatever failed, the writer goes on: these events are counted as lost, their
            # senders told, and the next group is tried afresh.
            self._lost(group, error)
            return
        for request, result in zip(group, results, strict=True):
            if request.ack is not None and result is not None and not request.ack.done():
                request.ack.set_result(result)

    def _lost(self, group: list[WriteRequest], error: Exception) -> None:
        """Count a group that could not be written, log it (throttled) and tell its senders.

        Not only SQLite's and the disk's errors come here: one the writer's task did not
        handle would end it without a word, and every later write would wait for good.
        Such an error's message may quote the value that caused it: only its type is told.
        """
        reason = str(error) if isinstance(error, sqlite3.Error | OSError) else type(error).__name__
        lost = sum(len(request.rows) for request in group)
        for request in group:
            for name, value in request.counters.items():
                self.unsaved[name] = self.unsaved.get(name, 0) + value
        self.unsaved["dropped.write_error"] = self.unsaved.get("dropped.write_error", 0) + lost
        told = self._write_failures.add(lost)
        if told is not None:
            log.error(
                "buffer_write_failed",
                reason=reason,
                events_lost=told,
                logged_at_most_every_seconds=self._write_failures.seconds,
            )
        for request in group:
            if request.ack is not None and not request.ack.done():
                request.ack.set_exception(StoreFullError(f"buffer write failed: {reason}"))

    async def _run_job(self, loop: asyncio.AbstractEventLoop, job: Job) -> None:
        run = self._in_transaction
        try:
            try:
                result = await loop.run_in_executor(self._executor, run, job.fn, job.transaction)
            except sqlite3.Error as error:
                if not await self._recover(loop, error, frees_space=job.frees_space):
                    raise
                result = await loop.run_in_executor(self._executor, run, job.fn, job.transaction)
        except Exception as error:
            if not job.done.done():
                job.done.set_exception(error)
            return
        if job.frees_space:
            await loop.run_in_executor(self._executor, self._file.restore_reserve)
        if not job.done.done():
            job.done.set_result(result)

    async def _recover(
        self, loop: asyncio.AbstractEventLoop, error: sqlite3.Error, *, frees_space: bool
    ) -> bool:
        """Heal a corrupt file or make room on a full disk; True when a second try may work."""
        if is_corrupt(error):
            replaced = await self._replace(loop, HEAL, str(error))
            return replaced is not None
        if is_full(error):
            make_room = self._file.make_room
            return await loop.run_in_executor(
                self._executor, lambda: make_room(use_reserve=frees_space)
            )
        return False

    async def _run_replace(self, loop: asyncio.AbstractEventLoop, job: ReplaceRequest) -> None:
        try:
            if job.kind == HEAL and job.generation != self._file.generation:
                result = None  # that file was replaced already
            else:
                result = await self._replace(loop, job.kind, job.reason)
        except Exception as error:
            if not job.done.done():
                job.done.set_exception(error)
            return
        if not job.done.done():
            job.done.set_result(result)

    async def _replace(
        self, loop: asyncio.AbstractEventLoop, kind: str, reason: str
    ) -> Replaced | None:
        """Put a fresh file in place (on this thread, between transactions). For HEAL a
        failure to do so is logged and None returned: the caller's own error stands."""
        if self._before_replace is not None:
            await self._before_replace()
        try:
            replaced = await loop.run_in_executor(self._executor, self._file.replace, kind)
        except (OSError, sqlite3.Error) as error:
            if kind != HEAL:
                raise
            log.error("buffer_corrupt_not_replaced", reason=str(error), found=reason)
            return None
        self._group.stored = 0
        if kind == HEAL:
            log.error(
                "buffer_corrupt_moved_aside",
                reason=reason,
                moved_to=str(replaced.kept),
                unreadable=list(replaced.unreadable),
                action="started a fresh buffer; the events queued now go into it",
            )
        return replaced

    def _in_transaction(self, fn: Callable[[sqlite3.Connection], T], transaction: bool) -> T:
        conn = self._file.conn
        if not transaction:
            result = fn(conn)
            self._file.after_write()
            return result
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = fn(conn)
            conn.execute("COMMIT")
        except BaseException:
            rollback(conn)
            raise
        self._file.after_write()
        # A job may have deleted rows (clear, retention); re-read the cheap running total.
        self._group.stored = counter(conn, STORED)
        return result


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
