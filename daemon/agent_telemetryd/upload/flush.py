"""One flush: pending events, a page at a time, in batches, to the sender.

A `Flush` lives for one run and holds everything that run accumulates: its report, the
batcher filling the next batch, and the refusals held until the backend accepts
something. An event is marked sent only after a 2xx; until then it stays pending, so a
crash between send and mark re-sends the same uuids, which a backend that dedupes on
uuid stores once. Consent is asked before every request, and so is the time the backend
asked not to be contacted before (`backend_wait`). Every request that left gets a
receipt, stamped when it left: answered, unanswered, or cancelled in flight.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
from collections.abc import Awaitable

from agent_telemetryd.config import HTTP_ENDPOINT_SETTING, POSTHOG_HOST_SETTING
from agent_telemetryd.lazy_log import get_logger
from agent_telemetryd.outbound import Outbound, OutboundBatch
from agent_telemetryd.senders.base import SendResult
from agent_telemetryd.store import upload_queries
from agent_telemetryd.store.buffer import Buffer
from agent_telemetryd.store.writer import Writer
from agent_telemetryd.upload import backend_wait, erasure, receipts
from agent_telemetryd.upload.backend_wait import BackendWait
from agent_telemetryd.upload.batching import Batcher, page_rows, split_batch
from agent_telemetryd.upload.ending import (
    BackendWaitingError,
    ConsentWithdrawnError,
    FlushEndedError,
)
from agent_telemetryd.upload.refusals import Refusal, Refusals
from agent_telemetryd.upload.report import FlushReport
from agent_telemetryd.upload.settings import FlushInputs, UploadSettings
from agent_telemetryd.upload.verdicts import Verdict, classify

# What the uploader, `preview` and the `flush` command take from here.
__all__ = [
    "ConsentWithdrawnError",
    "Flush",
    "FlushEndedError",
    "FlushInputs",
    "FlushReport",
    "UploadSettings",
]

log = get_logger("agent_telemetryd.upload")

# Where each sender's address is set: a redirect's message names it.
_ADDRESS_SETTING = {"posthog": POSTHOG_HOST_SETTING, "http": HTTP_ENDPOINT_SETTING}


class Flush:
    """One run; `run()` fills `report` or raises ConsentWithdrawnError/FlushEndedError."""

    def __init__(self, inputs: FlushInputs, report: FlushReport) -> None:
        self._in = inputs
        self.report = report
        # The same pages and batches as `preview` (see Batcher).
        self._batcher = Batcher(inputs.settings.batch_size, inputs.settings.max_batch_bytes)
        self._refusals = Refusals()
        self._recorded_ids: set[str] = set()  # known to `forget` before a request left
        # What the buffer said at the start (cleared once the backend accepts a batch).
        self._wait: BackendWait | None = None

    async def run(self) -> None:
        consent = self._in.consent()
        if not consent.uploads:
            self.report.skipped = f"mode is {consent.mode} ({consent.reason}): nothing is uploaded"
            return
        if not self._in.sender.sends:
            self.report.skipped = "sender is none: nothing is sent (set AGENT_TELEMETRY_SENDER)"
            return
        if self._in.settings.held is not None:
            self.report.skipped = self._in.settings.held
            return
        buffer = self._in.buffer()
        if buffer is None:
            return
        self._wait = await buffer.read(backend_wait.read)
        try:
            await self._send_pages(buffer)
            for batch in self._batcher.finish():
                await self._deliver_batch(batch)
        except BackendWaitingError as waiting:
            # The daemon's own schedule has nothing to report: it runs again later.
            # Someone who asked for a flush is told it did not send.
            if self.report.trigger != "schedule":
                raise
            self.report.skipped = str(waiting)
            return
        if self._refusals.held:
            raise self._refusals.ended()
        if self.report.requests:
            await buffer.writer.run(receipts.prune)

    async def _send_pages(self, buffer: Buffer) -> None:
        size = page_rows(self._in.settings.batch_size)

        def read_page(after_id: int) -> Awaitable[list[Outbound]]:
            now_ms = int(self._in.clock() * 1000)  # what waits for the rate limit stays
            return buffer.read(
                lambda conn: upload_queries.pending_page(conn, after_id, size, now_ms)
            )

        # The next page is read while this one is sent: the reads overlap the network
        # instead of adding to it.
        next_page: asyncio.Future[list[Outbound]] = asyncio.ensure_future(read_page(0))
        try:
            while True:
                self._check_consent()
                page = await next_page
                if not page:
                    break
                next_page = asyncio.ensure_future(read_page(page[-1].id))
                for batch in self._batcher.add(page):
                    await self._deliver_batch(batch)
        finally:
            next_page.cancel()

    def _check_consent(self) -> None:
        if not self._in.consent().uploads:
            raise ConsentWithdrawnError

    def _check_wait(self) -> None:
        wait, now_ms = self._wait, self._now_ms()
        if wait is not None and wait.applies(self._in.sender.backend, now_ms):
            self.report.not_before = wait.until
            raise BackendWaitingError(wait.message(now_ms))

    async def _deliver_batch(self, batch: OutboundBatch) -> None:
        """Send one batch; quarantine what the backend refused alone, once it took
        something in this flush; until then hold it (`refusals`): at most two batches
        are bisected against a backend that refuses everything."""
        found: list[Refusal] = []
        await self._deliver(batch, bisecting=False, refused=found)
        if self.report.batches:
            # `_accepted` already quarantined what was held before this batch.
            await self._quarantine_refused(found)
            return
        if not found:
            return
        self._refusals.hold(found)
        if self._refusals.refuses_everything:
            raise self._refusals.ended()

    async def _deliver(
        self, batch: OutboundBatch, *, bisecting: bool, refused: list[Refusal]
    ) -> None:
        """Send a batch until the backend decides, then act on its answer: mark it sent,
        or halve it (too large, or refused: bisection finds the events to blame)."""
        result, verdict, sent_ms = await self._send(batch, bisecting=bisecting)
        if verdict is Verdict.ACCEPTED:
            if _refuses_every_event(result, batch):
                await self._refused_by_answer(batch, result, sent_ms, refused)
            else:
                await self._accepted(batch, result, sent_ms)
        elif verdict is Verdict.SPLIT:
            if len(batch) == 1:  # too large alone, or a limit that refuses everything
                reason = f"too large for the backend: {result.error}"
                refused.append(Refusal(batch, reason, too_large=True))
            else:
                await self._bisect(batch, bisecting=bisecting, refused=refused)
        elif len(batch) == 1:  # REJECTED: this is the event the backend refuses
            refused.append(Refusal(batch, f"refused by the backend: {result.error}"))
        else:
            await self._bisect(batch, bisecting=True, refused=refused)

    async def _bisect(
        self, batch: OutboundBatch, *, bisecting: bool, refused: list[Refusal]
    ) -> None:
        for half in split_batch(batch):
            await self._deliver(half, bisecting=bisecting, refused=refused)

    async def _refused_by_answer(
        self, batch: OutboundBatch, result: SendResult, sent_ms: int, refused: list[Refusal]
    ) -> None:
        """A 2xx whose `rejected` list names every event: nothing was taken, so it counts
        as a batch refused whole, event by event with the backend's reasons."""
        reasons = dict(result.rejected)
        first = reasons[min(reasons)]
        answer = dataclasses.replace(
            result, error=f"HTTP {result.status}: every event refused ({first})"
        )
        await self._record(batch, answer, Verdict.REJECTED, sent_ms)
        for index, event in enumerate(batch.events):
            alone = OutboundBatch(batch.anonymous_id, (event,))
            refused.append(Refusal(alone, f"refused by the backend: {reasons[index]}"))

    async def _send(
        self, batch: OutboundBatch, *, bisecting: bool
    ) -> tuple[SendResult, Verdict, int]:
        """The first answer to act on: accepted, too large, or refused past its tries, with
        when its request left.

        Transient trouble is retried with backoff (the backend's Retry-After when it gave
        one); a configuration refusal (401/403/404) or a redirect ends the flush, as does
        a backend that stays unavailable or asks to wait longer than a flush does.
        """
        settings = self._in.settings
        transient = rejections = 0
        while True:
            self._check_consent()
            self._check_wait()
            await self._record_id(batch.anonymous_id)
            result, sent_ms = await self._request(batch)
            self.report.requests += 1
            verdict = classify(result.status, answer_read=result.answer_read)
            if verdict is Verdict.ACCEPTED:
                return result, verdict, sent_ms
            await self._record(batch, result, verdict, sent_ms)
            if verdict is Verdict.REFUSED:
                raise FlushEndedError(
                    f"the backend refused the upload ({result.error}); "
                    "check the API key and host in the config",
                    "refused",
                )
            if verdict is Verdict.REDIRECTED:
                raise FlushEndedError(self._redirected(result), "redirected")
            if verdict is Verdict.SPLIT:
                return result, verdict, sent_ms
            if verdict is Verdict.REJECTED:
                rejections += 1
                # Inside a bisection one refusal is enough: the first batch was tried
                # several times already, so refusals now point at the events.
                if bisecting or rejections >= settings.max_rejections:
                    return result, verdict, sent_ms
                await self._in.sleep(settings.backoff.delay(rejections, self._in.rand()))
                continue
            transient += 1
            await self._in.sleep(await self._retry_delay(result, transient))

    async def _request(self, batch: OutboundBatch) -> tuple[SendResult, int]:
        """The sender's answer and when the request left (its receipt's time, not when the
        answer came). Cancelled in flight (upload turned off, `clear`, `forget`, the
        daemon stopping), a request that left still gets its receipt: the backend may
        have received it."""
        left: list[tuple[str, int]] = []  # (body sha256, when), once it left

        def leaving(body_sha256: str) -> None:
            # Asked again as the request leaves: `disable` may have landed during this
            # attempt's awaits since the last check (the id's record, the gzip), and the
            # listener that cancels the flush runs only after the mode change's own write.
            self._check_consent()
            left.append((body_sha256, self._now_ms()))

        before_ms = self._now_ms()
        try:
            result = await self._in.sender.send(batch, leaving)
        except asyncio.CancelledError as cancel:
            if left:
                why = str(cancel.args[0]) if cancel.args else "the flush was stopped"
                await self._record_cancelled(batch, *left[0], why)
            raise
        return result, left[0][1] if left else before_ms

    def _redirected(self, result: SendResult) -> str:
        setting = _ADDRESS_SETTING.get(self._in.sender.name, "the backend's address")
        where = result.location or "an address it did not give (no Location)"
        return (
            f"the backend answered {result.kind}, a redirect to {where}; redirects are not "
            f"followed, so set {setting} to the final address; the events stay pending"
        )

    async def _record_id(self, anonymous_id: str) -> None:
        """`forget` must reach this id even if the answer to this request is lost: it is
        committed to the buffer, with the backend it goes to, before the request leaves
        (once per id and flush; a flush keeps its sender to the end)."""
        if anonymous_id in self._recorded_ids or not anonymous_id:
            return
        now_ms = self._now_ms()
        backend = self._in.sender.backend
        await self._writer().run(
            lambda conn: erasure.record_before_send(conn, anonymous_id, backend, now_ms)
        )
        self._recorded_ids.add(anonymous_id)

    async def _retry_delay(self, result: SendResult, attempt: int) -> float:
        """Seconds before retry `attempt` of a transient failure, or FlushEndedError.

        Ending, the flush keeps the wait it did not do (`backend_wait`): the backend's
        Retry-After, or the next backoff step after its last try, so no flush contacts
        it before then."""
        settings = self._in.settings
        delay = result.retry_after
        if delay is None:
            delay = settings.backoff.delay(attempt, self._in.rand())
        if delay > settings.max_retry_after:
            until = await self._keep_wait(delay, f"it asked to wait {delay:.0f}s ({result.kind})")
            raise FlushEndedError(
                f"the backend asked to wait {delay:.0f}s ({result.error}); nothing is sent "
                f"to it before {until}, and the events stay pending",
                "asked to wait",
            )
        if attempt >= settings.max_attempts:
            until = await self._keep_wait(
                delay, f"it was unavailable ({result.kind}) {attempt} times in a row"
            )
            raise FlushEndedError(
                f"the backend is unavailable ({result.error}) after {attempt} tries; "
                f"the events stay pending and the next run resumes after {until}",
                "unavailable",
            )
        return delay

    async def _keep_wait(self, seconds: float, reason: str) -> str:
        wait = BackendWait(self._now_ms() + int(seconds * 1000), self._in.sender.backend, reason)
        await self._writer().run(lambda conn: backend_wait.record(conn, wait))
        self._wait = wait
        self.report.not_before = wait.until
        return wait.until

    async def _accepted(self, batch: OutboundBatch, result: SendResult, sent_ms: int) -> None:
        refused = {batch.events[index].id: reason for index, reason in result.rejected}
        sent_ids = [event.id for event in batch.events if event.id not in refused]
        receipt = self._receipt(batch, result, Verdict.ACCEPTED, sent_ms)
        wait, self._wait = self._wait, None

        def commit(conn: sqlite3.Connection) -> None:
            receipts.record(conn, receipt)
            upload_queries.mark_sent(conn, sent_ids)
            for event_id, reason in refused.items():
                upload_queries.quarantine(conn, [event_id], f"refused by the backend: {reason}")
            if wait is not None:
                backend_wait.clear(conn)  # the backend takes requests again

        # Awaited before the next request: a crash re-sends at most the batch in flight.
        await self._writer().run(commit)
        if refused:
            log.warning("events_quarantined", count=len(refused), why="refused")
        self.report.events_sent += len(sent_ids)
        self.report.quarantined += len(refused)
        self.report.batches += 1
        # The backend accepts: refusals held before are about their events. Quarantined
        # before the next request, as every mark is.
        await self._quarantine_refused(self._refusals.release())

    async def _quarantine_refused(self, refused: list[Refusal]) -> None:
        for refusal in refused:
            ids = [event.id for event in refusal.batch.events]
            await self._writer().run(
                lambda conn, ids=ids, reason=refusal.reason: upload_queries.quarantine(
                    conn, ids, reason
                )
            )
            # The reason may quote the backend, which may echo the event: not logged.
            log.warning("events_quarantined", count=len(ids), why=refusal.why)
            self.report.quarantined += len(ids)

    async def _record(
        self, batch: OutboundBatch, result: SendResult, verdict: Verdict, sent_ms: int
    ) -> None:
        receipt = self._receipt(batch, result, verdict, sent_ms)
        await self._writer().run(lambda conn: receipts.record(conn, receipt))
        # The status and our classification only: the backend's text stays in receipts.
        log.warning(
            "upload_request_failed",
            status=result.status,
            problem=result.kind,
            verdict=verdict.value,
            events=len(batch),
        )

    async def _record_cancelled(
        self, batch: OutboundBatch, body_sha256: str, sent_ms: int, why: str
    ) -> None:
        backend = self._in.sender.backend
        receipt = receipts.cancelled(backend, len(batch), body_sha256, sent_ms, why)
        try:
            await self._writer().run(lambda conn: receipts.record(conn, receipt))
        except (FlushEndedError, sqlite3.Error, RuntimeError):
            # The buffer is going away with the flush (mode off): nothing left to write to.
            return
        log.warning("upload_request_cancelled", events=len(batch))

    def _receipt(
        self, batch: OutboundBatch, result: SendResult, verdict: Verdict, sent_ms: int
    ) -> receipts.Receipt:
        return receipts.answered(self._in.sender.backend, len(batch), result, verdict, sent_ms)

    def _now_ms(self) -> int:
        return int(self._in.clock() * 1000)

    def _writer(self) -> Writer:
        buffer = self._in.buffer()
        if buffer is None:
            raise FlushEndedError("the buffer was closed during the flush", "buffer closed")
        return buffer.writer


def _refuses_every_event(result: SendResult, batch: OutboundBatch) -> bool:
    return len({index for index, _ in result.rejected}) == len(batch)
