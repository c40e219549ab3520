"""The uploader: at most one flush at a time, paused and stopped on demand.

A second request for a flush waits for the running one and gets its report. Consent is
checked before every request, so `disable` stops a flush before its next request (the
mode listener also cancels the request in flight). What one flush does is `flush.Flush`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from agent_telemetry._wire import format_timestamp
from agent_telemetryd.consent import ConsentState
from agent_telemetryd.lazy_log import get_logger
from agent_telemetryd.ratelimit import waiting_report
from agent_telemetryd.senders.base import Sender
from agent_telemetryd.store import upload_queries
from agent_telemetryd.store.buffer import Buffer
from agent_telemetryd.upload.flush import (
    ConsentWithdrawnError,
    Flush,
    FlushEndedError,
    FlushInputs,
    FlushReport,
    UploadSettings,
)

log = get_logger("agent_telemetryd.upload")

STOPPING = "the daemon is stopping"


class Uploader:
    def __init__(
        self,
        sender: Sender,
        settings: UploadSettings,
        *,
        consent: Callable[[], ConsentState],
        buffer: Callable[[], Buffer | None],
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.sender = sender
        self.settings = settings
        self._inputs = FlushInputs(sender, settings, consent, buffer, clock, sleep, rand)
        self._current: asyncio.Task[FlushReport] | None = None
        # The sending part of the current flush: what `stop` cancels. The report that
        # follows it is never cancelled, so whoever waits always gets one.
        self._sending: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self.last_report: FlushReport | None = None
        self._stop_reason = "stopped"
        self._pauses: list[str] = []
        self._retiring: set[asyncio.Task[None]] = set()
        # Called after every flush (the idle timer starts its quiet period again).
        self.on_finish: list[Callable[[], None]] = []

    @property
    def running(self) -> bool:
        return self._current is not None and not self._current.done()

    async def flush(self, trigger: str = "command") -> FlushReport:
        """Run one flush now, or join the one running, and return its report."""
        async with self._lock:
            if self._pauses and not self.running:
                started = self._now()
                return FlushReport(
                    trigger=trigger,
                    started_at=started,
                    finished_at=started,
                    skipped=f"uploads are paused: {self._pauses[-1]}",
                )
            if not self.running:
                report = FlushReport(trigger=trigger, started_at=self._now())
                self._stop_reason = "stopped"
                self._sending = asyncio.create_task(
                    Flush(self._inputs, report).run(), name="upload-send"
                )
                self._current = asyncio.create_task(
                    self._finish(report, self._sending), name="upload-flush"
                )
            task = self._current
        assert task is not None
        # Shielded: a caller that goes away (CLI interrupted) does not cancel the flush.
        return await asyncio.shield(task)

    def reconfigure(self, sender: Sender, settings: UploadSettings) -> None:
        """Use `sender` and `settings` from the next flush on (a reload). A flush under way
        keeps the sender it started with until it ends (the part stops it when the sender
        changed), and that sender is closed once it has."""
        old, running = self.sender, self._current if self.running else None
        self.sender, self.settings = sender, settings
        self._inputs = dataclasses.replace(self._inputs, sender=sender, settings=settings)
        if old is not sender:
            task = asyncio.create_task(self._retire(old, running), name="retire-sender")
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)

    async def _retire(self, sender: Sender, running: asyncio.Task[FlushReport] | None) -> None:
        if running is not None:
            await asyncio.gather(running, return_exceptions=True)
        await sender.close()

    async def wind_down(self, reason: str) -> None:
        """Stop the running flush and start no other, for good (the daemon is stopping):
        whoever waits on a flush gets its report now, not when the daemon is gone."""
        if reason not in self._pauses:
            self._pauses.append(reason)
        await self.stop(reason)

    async def close(self) -> None:
        """Stop any flush, then close the sender and any being retired."""
        await self.wind_down(STOPPING)
        await asyncio.gather(*self._retiring, return_exceptions=True)
        await self.sender.close()

    @contextlib.asynccontextmanager
    async def paused(self, reason: str) -> AsyncIterator[None]:
        """Stop the running flush and start none until the block ends: what `clear` or
        `forget` removes must not leave in a flush that read it just before."""
        self._pauses.append(reason)
        try:
            await self.stop(reason)
            yield
        finally:
            self._pauses.remove(reason)

    async def stop(self, reason: str = "stopped") -> None:
        """Cancel the running flush (its in-flight request too) and wait until it ended."""
        task = self._current
        if task is None or task.done():
            return
        self._stop_reason = reason
        assert self._sending is not None
        # The reason goes with the cancellation: a request in flight gets a receipt saying it.
        self._sending.cancel(reason)
        await asyncio.gather(task, return_exceptions=True)

    async def _finish(self, report: FlushReport, sending: asyncio.Task[None]) -> FlushReport:
        problem: str | None = None  # what the log says of an error: never its text
        try:
            await sending
        except ConsentWithdrawnError:
            report.stopped = "upload was turned off during the flush; no further request"
        except asyncio.CancelledError:
            # Swallowed on purpose: whoever waits on this flush gets a report, not an error.
            report.stopped = self._stop_reason
        except FlushEndedError as error:
            report.ok, report.error, report.ended = False, str(error), error.kind
            problem = error.kind
        except sqlite3.Error as error:
            report.ok, report.error = False, f"buffer error: {error}"
            problem = "buffer error"
        await self._note_waiting(report)
        report.finished_at = self._now()
        self.last_report = report
        log.info(
            "flush_finished",
            trigger=report.trigger,
            ok=report.ok,
            events_sent=report.events_sent,
            batches=report.batches,
            requests=report.requests,
            quarantined=report.quarantined,
            problem=problem,
            not_before=report.not_before,
            stopped=report.stopped,
            skipped=report.skipped,
        )
        for hook in self.on_finish:
            hook()
        return report

    async def _note_waiting(self, report: FlushReport) -> None:
        """What the rate limit still holds back: the flush did not forget it, it waits."""
        buffer = self._inputs.buffer()
        if buffer is None or report.skipped:
            return
        now_ms = int(self._inputs.clock() * 1000)
        settings = self._inputs.settings
        try:
            found = await buffer.read(lambda conn: upload_queries.waiting(conn, now_ms))
        except sqlite3.Error:
            return  # the report says what was sent; a failed count must not hide it
        report.waiting = waiting_report(found, settings.rate_limit, settings.rate_limit_backlog)

    def _now(self) -> str:
        return format_timestamp(int(self._inputs.clock() * 1000))
