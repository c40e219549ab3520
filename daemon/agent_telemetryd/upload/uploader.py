"""One flush: pending events, a page at a time, in batches, to the sender (DESIGN §9).

At most one flush runs; a second request waits for the running one and gets its report.
Consent is checked before every request, so `disable` stops a flush before its next
request (the mode listener also cancels the request in flight). An event is marked sent
only after a 2xx; until then it stays pending, so a crash between send and mark re-sends
the same uuids, which a backend that dedupes on uuid stores once.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import structlog

from agent_telemetryd.context import DaemonContext
from agent_telemetryd.outbound import Outbound, OutboundBatch
from agent_telemetryd.senders.base import Sender, SendResult, rfc3339_ms
from agent_telemetryd.store import upload_queries
from agent_telemetryd.store.writer import Writer
from agent_telemetryd.upload import receipts
from agent_telemetryd.upload.backoff import Backoff
from agent_telemetryd.upload.batching import Batcher, page_rows, split_batch
from agent_telemetryd.upload.verdicts import Verdict, classify

log = structlog.get_logger("agent_telemetryd.upload")


@dataclass(frozen=True)
class UploadSettings:
    batch_size: int = 100
    # The official PostHog SDK keeps batches under 5 MiB (its API takes 20 MB).
    max_batch_bytes: int = 5 * 1024 * 1024
    # Tries of one request on network errors, timeouts, 5xx and 429; then the flush ends
    # and the next scheduled run resumes where it stopped (the events stay pending).
    max_attempts: int = 5
    # Tries of a batch answered with a "bad request" 4xx before it is bisected.
    max_rejections: int = 3
    # A Retry-After longer than this ends the flush instead of holding it open.
    max_retry_after: float = 120.0
    backoff: Backoff = field(default_factory=Backoff)


class ConsentWithdrawnError(Exception):
    """Upload was turned off: no further request."""


class FlushEndedError(Exception):
    """The backend is unavailable or refuses us; the message says why, for the user."""


@dataclass
class FlushReport:
    trigger: str
    started_at: str
    finished_at: str | None = None
    ok: bool = True
    events_sent: int = 0
    batches: int = 0
    requests: int = 0
    quarantined: int = 0
    error: str | None = None  # the backend failed: `flush` exits non-zero
    stopped: str | None = None  # consent withdrawn or daemon stopping mid-flush
    skipped: str | None = None  # nothing could be sent at all (mode, sender)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Refusals:
    """Events the backend refused one by one (bisection's leaves, with its reason) before
    it accepted anything in this flush: held pending, not quarantined, until it does."""

    held: list[tuple[OutboundBatch, str]] = field(default_factory=list)
    batches: int = 0  # batches refused whole, in a row, with nothing accepted

    def hold(self, suspects: list[tuple[OutboundBatch, str]]) -> None:
        self.held.extend(suspects)
        self.batches += 1

    def release(self) -> list[tuple[OutboundBatch, str]]:
        held, self.held, self.batches = self.held, [], 0
        return held

    def ended(self) -> FlushEndedError:
        events = sum(len(suspect) for suspect, _ in self.held)
        reason = self.held[-1][1] if self.held else "no reason given"
        noun = "event" if events == 1 else "events"
        return FlushEndedError(
            f"the backend refused every event it was sent ({events} {noun} in "
            f"{self.batches} {'batch' if self.batches == 1 else 'batches'}; {reason}); "
            "nothing was quarantined and the events stay pending"
        )


def _now() -> str:
    return rfc3339_ms(int(time.time() * 1000))


class Uploader:
    def __init__(
        self,
        context: DaemonContext,
        sender: Sender,
        settings: UploadSettings,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self._context = context
        self.sender = sender
        self.settings = settings
        self._sleep = sleep
        self._rand = rand
        self._current: asyncio.Task[FlushReport] | None = None
        self._lock = asyncio.Lock()
        self.last_report: FlushReport | None = None
        self._stop_reason = "stopped"
        self._pauses: list[str] = []
        self._refusals = _Refusals()  # per flush: refused before anything was accepted

    @property
    def running(self) -> bool:
        return self._current is not None and not self._current.done()

    async def flush(self, trigger: str = "command") -> FlushReport:
        """Run one flush now, or join the one running, and return its report."""
        async with self._lock:
            if self._pauses and not self.running:
                started = _now()
                return FlushReport(
                    trigger=trigger,
                    started_at=started,
                    finished_at=started,
                    skipped=f"uploads are paused: {self._pauses[-1]}",
                )
            if not self.running:
                self._current = asyncio.create_task(self._run(trigger), name="upload-flush")
            task = self._current
        assert task is not None
        # Shielded: a caller that goes away (CLI interrupted) does not cancel the flush.
        return await asyncio.shield(task)

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
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    async def _run(self, trigger: str) -> FlushReport:
        report = FlushReport(trigger=trigger, started_at=_now())
        self._stop_reason = "stopped"
        try:
            await self._flush_all(report)
        except ConsentWithdrawnError:
            report.stopped = "upload was turned off during the flush; no further request"
        except asyncio.CancelledError:
            # Swallowed on purpose: whoever waits on this flush gets a report, not an error.
            report.stopped = self._stop_reason
        except FlushEndedError as error:
            report.ok, report.error = False, str(error)
        except sqlite3.Error as error:
            report.ok, report.error = False, f"buffer error: {error}"
        report.finished_at = _now()
        self.last_report = report
        log.info(
            "flush_finished",
            trigger=trigger,
            ok=report.ok,
            events_sent=report.events_sent,
            batches=report.batches,
            requests=report.requests,
            quarantined=report.quarantined,
            error=report.error,
            stopped=report.stopped,
            skipped=report.skipped,
        )
        return report

    def _check_consent(self) -> None:
        if not self._context.consent.uploads:
            raise ConsentWithdrawnError

    async def _flush_all(self, report: FlushReport) -> None:
        consent = self._context.consent
        if not consent.uploads:
            report.skipped = f"mode is {consent.mode} ({consent.reason}): nothing is uploaded"
            return
        if not self.sender.sends:
            report.skipped = "sender is none: nothing is sent (set AGENT_TELEMETRY_SENDER)"
            return
        buffer = self._context.buffer
        if buffer is None:
            return
        settings = self.settings
        size = page_rows(settings.batch_size)

        def read_page(after_id: int) -> Awaitable[list[Outbound]]:
            return buffer.read(lambda conn: upload_queries.pending_page(conn, after_id, size))

        # The same pages and batches as `preview` (see Batcher), the next page read while
        # this one is sent: the page reads overlap the network instead of adding to it.
        batcher = Batcher(settings.batch_size, settings.max_batch_bytes)
        refusals = self._refusals = _Refusals()
        next_page: asyncio.Future[list[Outbound]] = asyncio.ensure_future(read_page(0))
        try:
            while True:
                self._check_consent()
                page = await next_page
                if not page:
                    break
                next_page = asyncio.ensure_future(read_page(page[-1].id))
                for batch in batcher.add(page):
                    await self._deliver_batch(batch, report)
        finally:
            next_page.cancel()
        for batch in batcher.finish():
            await self._deliver_batch(batch, report)
        if refusals.held:
            raise refusals.ended()
        if report.requests:
            await buffer.writer.run(receipts.prune)

    async def _deliver_batch(self, batch: OutboundBatch, report: FlushReport) -> None:
        """Send one batch; quarantine what bisection found, once the backend took something.

        A backend that refuses *every* event (a broken deploy answering 400) must not
        quarantine the whole backlog, so what is refused before anything was accepted in
        this flush is held, pending, and the next batch is tried: once the backend accepts
        something, the refusals are about those events and they are quarantined. A second
        batch refused whole with nothing accepted ends the flush, quarantining nothing:
        at most two batches are bisected against a backend that refuses everything.
        """
        found: list[tuple[OutboundBatch, str]] = []
        refusals = self._refusals
        await self._deliver(batch, report, bisecting=False, suspects=found)
        if report.batches:
            # `_accepted` already quarantined what was held before this batch.
            await self._quarantine_suspects(found, report)
            return
        if not found:
            return
        refusals.hold(found)
        if refusals.batches >= 2:
            raise refusals.ended()

    async def _deliver(
        self,
        batch: OutboundBatch,
        report: FlushReport,
        *,
        bisecting: bool,
        suspects: list[tuple[OutboundBatch, str]],
    ) -> None:
        settings = self.settings
        transient = rejections = 0
        while True:
            self._check_consent()
            result = await self.sender.send(batch)
            report.requests += 1
            verdict = classify(result.status)
            if verdict is Verdict.ACCEPTED:
                await self._accepted(batch, result, report)
                return
            await self._record(batch, result, verdict)
            if verdict is Verdict.REFUSED:
                raise FlushEndedError(
                    f"the backend refused the upload ({result.error}); "
                    "check the API key and host in the config"
                )
            if verdict is Verdict.SPLIT:
                if len(batch) == 1:
                    await self._quarantine(batch, f"too large for the backend: {result.error}")
                    report.quarantined += 1
                    return
                for half in split_batch(batch):
                    await self._deliver(half, report, bisecting=bisecting, suspects=suspects)
                return
            if verdict is Verdict.REJECTED:
                rejections += 1
                # Inside a bisection one refusal is enough: the first batch was tried
                # several times already, so refusals now point at the events.
                if bisecting or rejections >= settings.max_rejections:
                    if len(batch) == 1:
                        suspects.append((batch, f"refused by the backend: {result.error}"))
                        return
                    for half in split_batch(batch):
                        await self._deliver(half, report, bisecting=True, suspects=suspects)
                    return
                await self._sleep(settings.backoff.delay(rejections, self._rand()))
                continue
            transient += 1
            if transient >= settings.max_attempts:
                raise FlushEndedError(
                    f"the backend is unavailable ({result.error}) after {transient} tries; "
                    "the events stay pending and the next run resumes"
                )
            delay = result.retry_after
            if delay is None:
                delay = settings.backoff.delay(transient, self._rand())
            if delay > settings.max_retry_after:
                raise FlushEndedError(
                    f"the backend asked to wait {delay:.0f}s ({result.error}); "
                    "the events stay pending and the next run resumes"
                )
            await self._sleep(delay)

    async def _accepted(
        self, batch: OutboundBatch, result: SendResult, report: FlushReport
    ) -> None:
        refused = {batch.events[index].id: reason for index, reason in result.rejected}
        sent_ids = [event.id for event in batch.events if event.id not in refused]
        receipt = self._receipt(batch, result, Verdict.ACCEPTED)

        def commit(conn: sqlite3.Connection) -> None:
            receipts.record(conn, receipt)
            upload_queries.mark_sent(conn, sent_ids)
            for event_id, reason in refused.items():
                upload_queries.quarantine(conn, [event_id], f"refused by the backend: {reason}")

        # Awaited before the next request: a crash re-sends at most the batch in flight.
        await self._writer().run(commit)
        report.events_sent += len(sent_ids)
        report.quarantined += len(refused)
        report.batches += 1
        # The backend accepts: refusals held before are about their events. Quarantined
        # before the next request, as every mark is.
        await self._quarantine_suspects(self._refusals.release(), report)

    async def _quarantine_suspects(
        self, suspects: list[tuple[OutboundBatch, str]], report: FlushReport
    ) -> None:
        for suspect, reason in suspects:
            await self._quarantine(suspect, reason)
            report.quarantined += len(suspect)

    async def _quarantine(self, batch: OutboundBatch, reason: str) -> None:
        ids = [event.id for event in batch.events]
        await self._writer().run(lambda conn: upload_queries.quarantine(conn, ids, reason))
        log.warning("events_quarantined", count=len(ids), reason=reason)

    async def _record(self, batch: OutboundBatch, result: SendResult, verdict: Verdict) -> None:
        receipt = self._receipt(batch, result, verdict)
        await self._writer().run(lambda conn: receipts.record(conn, receipt))
        log.warning(
            "upload_request_failed",
            status=result.status,
            reason=result.error,
            verdict=verdict.value,
            events=len(batch),
        )

    def _receipt(
        self, batch: OutboundBatch, result: SendResult, verdict: Verdict
    ) -> receipts.Receipt:
        return receipts.Receipt(
            sent_ms=int(time.time() * 1000),
            backend=self.sender.backend,
            events=len(batch),
            body_sha256=result.body_sha256,
            status=verdict.value,
            http_status=result.status,
            error=result.error,
        )

    def _writer(self) -> Writer:
        buffer = self._context.buffer
        if buffer is None:
            raise FlushEndedError("the buffer was closed during the flush")
        return buffer.writer
