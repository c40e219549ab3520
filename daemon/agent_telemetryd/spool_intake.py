"""Spool files: what agents could not hand to the daemon, taken in when it can.

An agent that cannot reach the daemon (down, stopped, slow at the agent's exit) writes
what it could not send to `<data dir>/spool/`, one file per process, each line a wire line
as on ingest.sock, under a temporary name (`.<pid>-<random>.tmp`) renamed to
`<pid>-<random>.ndjson` when complete. The daemon reads complete files when it starts and
whenever an agent connects — an agent that reaches the daemon may have spooled while it
could not — never on a timer: no connection, no work.

A file goes through the same NDJSON path as ingest.sock (`Ingestor.accept_lines`, transport
`spool`, the pid from its name), read in chunks so memory stays flat whatever its size.
It is deleted only once every chunk is committed. Its drop-count lines (what the agent
lost, counted under `client_*` reasons) are held back and committed with the last chunk,
together with a mark in `meta` naming the file: a daemon killed between that commit and
the delete finds the mark at its next start and deletes the file without counting it
again. (Events alone would be harmless to re-read, since the same uuid is stored once;
drop counts have no uuid.)

A `.tmp` file whose writer is gone is taken too (spool_files.py says when): a process
killed while spooling never renames its file, and those events would wait forever. Its
last line may be cut short: it is rejected like any bad line, the rest kept.

Consent: a spooled event may be uploaded only if it was tracked while upload was the mode,
and when it was tracked the daemon cannot see; the event's timestamp (the shim's clock at
`track()`, or a time the caller gave) is the best it has, and the file's last write bounds
it: an event is tracked before the file holding it is written, so a timestamp later than
that write is not when it was tracked. So in mode `upload` an event from a spool file is
pending only when its timestamp is at or after the moment upload took effect as far as the
daemon knows (`UploadSince`: the time `enable` was run, recorded in the consent file; for a
mode set by the environment or the config, the daemon's start or the change to `upload`)
and not after the file's last write; an event tracked earlier, or without a timestamp, or
with one from after its file was written, stays local for good. Never more permissive than
the contract: events tracked while `local` are not uploaded because a later `enable` came
before the daemon read them.

Mode `off`: nothing is kept, and the files are deleted unread — their lines counted as
received and dropped (`mode_off`), the drop-count lines' counts under their `client_*`
reasons — so what agents handed over stays accounted for, and nothing of it is read.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from agent_telemetry._paths import SPOOL_DIR_NAME, private_dir_problem
from agent_telemetryd.config import Mode
from agent_telemetryd.consent import ConsentState
from agent_telemetryd.context import DaemonContext
from agent_telemetryd.ingest import Ingestor, Source
from agent_telemetryd.lazy_log import get_logger
from agent_telemetryd.log_budget import LogBudget
from agent_telemetryd.parts import Started
from agent_telemetryd.spool_files import (
    DROP_LINE_PREFIX,
    file_key,
    open_spool_file,
    ready_files,
    waiting_files,
    whole_lines,
)
from agent_telemetryd.store import queries
from agent_telemetryd.store.writer import StoreFullError, WriteResult

log = get_logger("agent_telemetryd.spool")

IN_FLIGHT = 4  # chunks handed to the writer and not yet committed
# After an agent connects, the shim renames its spool file: give it that moment, and let a
# burst of connections make one scan.
SETTLE_SECONDS = 0.05
# What a scan may find wrong, each a log line within its own budget.
_PROBLEMS = ("spool_folder_refused", "spool_file_kept", "spool_file_unreadable")
# A live agent that connected while its file was still being written: look once more.
RESCAN_SECONDS = 1.0
MARK_PREFIX = "spool_taken:"
# Later than any event's timestamp: while the mode is not `upload`, none qualifies.
NEVER_MS = 2**62

GetMeta = Callable[[str], Awaitable[str | None]]
DropMark = Callable[[str], Awaitable[None]]


@dataclass
class IntakeStats:
    files: int = 0
    lines: int = 0
    discarded_files: int = 0
    last_error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "files_taken": self.files,
            "lines_taken": self.lines,
            "files_discarded": self.discarded_files,
            "last_error": self.last_error,
        }


class UploadSince:
    """Since when (Unix ms) the mode in effect has been `upload`, as far as the daemon can
    tell: the time recorded with `enable` for a mode set by command, else when this daemon
    started in `upload` or changed to it. `NEVER_MS` while the mode is something else."""

    def __init__(self, state: ConsentState, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self.ms = self._began(state) if state.uploads else NEVER_MS

    def _began(self, state: ConsentState) -> int:
        now_ms = int(self._clock() * 1000)
        if state.source == "command" and state.since:
            try:
                moment = datetime.fromisoformat(state.since.replace("Z", "+00:00"))
            except ValueError:
                return now_ms
            # Recorded to the second, cut: the choice may have come up to 1 s later.
            return min(int(moment.timestamp()) * 1000 + 1000, now_ms)
        return now_ms

    async def on_mode_change(self, before: ConsentState, after: ConsentState) -> None:
        if not after.uploads:
            self.ms = NEVER_MS
        elif not before.uploads:
            self.ms = int(self._clock() * 1000)


class SpoolIntake:
    def __init__(
        self,
        directory: Path,
        ingestor: Ingestor,
        *,
        mode: Callable[[], str],
        get_meta: GetMeta,
        drop_mark: DropMark,
        max_line_bytes: int,
        upload_from: Callable[[], int] = lambda: NEVER_MS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.directory = directory
        self._upload_from = upload_from
        self._ingestor = ingestor
        self._mode = mode
        self._get_meta = get_meta
        self._drop_mark = drop_mark
        self._max_line = max_line_bytes
        self._clock = clock
        self._task: asyncio.Task[None] | None = None
        self._again = False
        self._connected: set[int] = set()  # pids that connected since the last scan
        self._rescan: asyncio.TimerHandle | None = None
        self._closed = False
        self.stats = IntakeStats()
        # Every agent's connection scans again, and finds the same folder or file again:
        # a problem that stays (a folder restored with other modes) is logged within a
        # budget (log_budget.py), not once a connection for as long as it lasts.
        self._problem_lines = {name: LogBudget() for name in _PROBLEMS}

    # -- when -------------------------------------------------------------------------

    def trigger(self, pid: int | None = None) -> None:
        """Scan soon (an agent connected, or the daemon started). Connections during a scan
        make one more scan after it, not one each."""
        if self._closed:
            return
        if pid is not None:
            self._connected.add(pid)
        if self._task is not None and not self._task.done():
            self._again = True
            return
        self._task = asyncio.get_running_loop().create_task(self._run(), name="spool-intake")

    async def _run(self) -> None:
        while True:
            self._again = False
            await asyncio.sleep(SETTLE_SECONDS)
            connected, self._connected = self._connected, set()
            try:
                still_writing = await self.scan()
            except Exception as error:  # never the daemon: the next trigger tries again
                self.stats.last_error = f"{type(error).__name__}: {error}"
                log.error("spool_scan_failed", reason=self.stats.last_error)
                return
            if still_writing & connected and self._rescan is None:
                loop = asyncio.get_running_loop()
                self._rescan = loop.call_later(RESCAN_SECONDS, self._rescan_now)
            if not self._again:
                return

    def _rescan_now(self) -> None:
        self._rescan = None
        self.trigger()

    async def close(self) -> None:
        """Stop: a file half taken stays, and is taken again (once) at the next start."""
        self._closed = True
        if self._rescan is not None:
            self._rescan.cancel()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    # -- what -------------------------------------------------------------------------

    async def scan(self) -> set[int]:
        """Take every complete file (and abandoned partial one), oldest first; returns the
        pids of live agents whose files are still being written."""
        problem = private_dir_problem(self.directory)
        if problem is not None:
            self._problem("spool_folder_refused", path=str(self.directory), reason=problem)
            return set()
        files, still_writing = ready_files(self.directory, self._clock())
        for path, pid in files:
            if self._closed:
                break
            await self._take(path, pid)
        return still_writing

    async def _take(self, path: Path, pid: int) -> None:
        mark = MARK_PREFIX + file_key(path.name)
        mode = str(self._mode())
        try:
            if mode == Mode.OFF:
                await self._discard(path, pid)
            elif await self._get_meta(mark) is None:
                await self._ingest(path, pid, mark)
            # else: taken before, and the daemon stopped before deleting it
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            if mode != Mode.OFF:
                await self._drop_mark(mark)  # the file is gone: its name never comes back
        except StoreFullError as error:
            # Nothing of it is lost: the file stays and is taken at the next connection.
            self.stats.last_error = str(error)
            self._problem("spool_file_kept", path=str(path), reason=str(error))
        except OSError as error:
            self.stats.last_error = f"{path.name}: {error.strerror}"
            self._problem("spool_file_unreadable", path=str(path), reason=error.strerror)

    def _problem(self, name: str, **fields: str | None) -> None:
        lines = self._problem_lines[name]
        if lines.allows():
            level = log.warning if name == "spool_file_kept" else log.error
            level(name, seen_so_far=lines.seen, **fields)

    async def _ingest(self, path: Path, pid: int, mark: str) -> None:
        in_flight: deque[asyncio.Future[WriteResult]] = deque()
        drop_lines: list[bytes] = []
        lines_taken = 0
        try:
            with open_spool_file(path) as file:
                # Every event in the file was tracked before its last write.
                written_ms = os.fstat(file.fileno()).st_mtime_ns // 1_000_000
                source = self._source(pid, written_ms)
                oversize = functools.partial(self._reject_oversize, source)
                for lines in whole_lines(file, self._max_line, oversize):
                    await asyncio.sleep(0)  # a turn for everyone else between chunks
                    events = []
                    for line in lines:
                        kind = drop_lines if line.startswith(DROP_LINE_PREFIX) else events
                        kind.append(line)
                    if not events:
                        continue
                    lines_taken += len(events)
                    source = self._source(pid, written_ms)
                    outcome = self._ingestor.accept_lines(events, source, ack=True)
                    if outcome.pending is not None:
                        in_flight.append(outcome.pending)
                    while len(in_flight) >= IN_FLIGHT:
                        await in_flight.popleft()
            # Last, with the drop counts: the mark says the whole file is in.
            outcome = self._ingestor.accept_lines(
                drop_lines, source, ack=True, marks={mark: str(int(self._clock() * 1000))}
            )
            if outcome.pending is not None:
                in_flight.append(outcome.pending)
            while in_flight:
                await in_flight.popleft()
        finally:
            # A write that failed (or a stop) leaves the rest to finish on their own.
            await asyncio.gather(*in_flight, return_exceptions=True)
        self.stats.files += 1
        self.stats.lines += lines_taken
        log.info("spool_file_taken", file=path.name, pid=pid, lines=lines_taken)

    def _source(self, pid: int, written_ms: int) -> Source:
        return Source(
            "spool", pid=pid, upload_from_ms=self._upload_from(), tracked_by_ms=written_ms
        )

    async def _discard(self, path: Path, pid: int) -> None:
        """Mode off: count the lines, read nothing but the drop counts, delete the file."""
        source = Source("spool", pid=pid)
        events = 0
        drop_lines: list[bytes] = []
        with open_spool_file(path) as file:
            for lines in whole_lines(file, self._max_line, lambda: None):
                await asyncio.sleep(0)
                for line in lines:
                    if line.startswith(DROP_LINE_PREFIX):
                        drop_lines.append(line)
                    else:
                        events += 1
        self._ingestor.discard_unread(events)
        if drop_lines:
            self._ingestor.accept_lines(drop_lines, source)  # counted in memory in `off`
        self.stats.discarded_files += 1
        log.info("spool_file_discarded", file=path.name, pid=pid, lines=events, mode=Mode.OFF)

    def _reject_oversize(self, source: Source) -> None:
        self._ingestor.reject_unparsable(
            f"line longer than {self._max_line} bytes; skipped to the next newline", source
        )


def spool_dir(data_dir: Path) -> Path:
    return data_dir / SPOOL_DIR_NAME


async def start(context: DaemonContext) -> Started:
    """Start taking spool files: now, and whenever an agent connects."""
    ingestor = context.ingestor
    assert ingestor is not None

    async def get_meta(key: str) -> str | None:
        buffer = context.buffer
        if buffer is None:
            return None
        return await buffer.read(lambda conn: queries.get_meta(conn, key))

    async def drop_mark(key: str) -> None:
        buffer = context.buffer
        if buffer is not None:
            await buffer.writer.run(lambda conn: queries.delete_meta(conn, key))

    upload_since = UploadSince(context.consent)
    context.mode_listeners.append(upload_since.on_mode_change)
    intake = SpoolIntake(
        spool_dir(context.config.paths.data_dir),
        ingestor,
        mode=lambda: context.consent.mode,
        get_meta=get_meta,
        drop_mark=drop_mark,
        max_line_bytes=context.config.max_line_bytes,
        upload_from=lambda: upload_since.ms,
    )

    async def status_section() -> dict[str, Any]:
        return {
            "spool": {**intake.stats.as_dict(), "files_waiting": waiting_files(intake.directory)}
        }

    ingestor.on_agent_connected(intake.trigger)
    context.status_sections.append(status_section)
    intake.trigger()
    return Started(close=intake.close)
