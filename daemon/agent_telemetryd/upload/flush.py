"""One flush: pending events, a page at a time, in batches, to the sender.

A `Flush` lives for one run and holds everything that run accumulates: its report, the
batcher filling the next batch, and the refusals held until the backend accepts
something. An event is marked sent only after a 2xx; until then it stays pending, so a
crash between send and mark re-sends the same uuids, which a backend that dedupes on
uuid stores once. Consent is asked before every request.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from agent_telemetryd.config_values import RateRule
from agent_telemetryd.consent import ConsentState
from agent_telemetryd.lazy_log import get_logger
from agent_telemetryd.outbound import Outbound, OutboundBatch
from agent_telemetryd.senders.base import Sender, SendResult
from agent_telemetryd.store import upload_queries
from agent_telemetryd.store.buffer import Buffer
from agent_telemetryd.store.writer import Writer
from agent_telemetryd.upload import erasure, receipts
from agent_telemetryd.upload.backoff import Backoff
from agent_telemetryd.upload.batching import Batcher, page_rows, split_batch
from agent_telemetryd.upload.verdicts import Verdict, classify

log = get_logger("agent_telemetryd.upload")

# Events a backend refused, with its reason.
Suspects = list[tuple[OutboundBatch, str]]


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
    # The upload rate limit, to say why events wait (the ingestor applies it).
    rate_limit: tuple[RateRule, ...] = ()
    rate_limit_backlog: int = 10_000


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
    # Pending events the rate limit still holds back when the flush ended, and why.
    waiting: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Refusals:
    """Events the backend refused one by one (bisection's leaves, with its reason) before
    it accepted anything in this flush: held pending, not quarantined, until it does."""

    held: Suspects = field(default_factory=list)
    batches: int = 0  # batches refused whole, in a row, with nothing accepted

    def hold(self, suspects: Suspects) -> None:
        self.held.extend(suspects)
        self.batches += 1

    def release(self) -> Suspects:
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


@dataclass(frozen=True)
class FlushInputs:
    """Everything a flush reads from outside, so a test can give each one."""

    sender: Sender
    settings: UploadSettings
    consent: Callable[[], ConsentState]
    buffer: Callable[[], Buffer | None]
    clock: Callable[[], float]
    sleep: Callable[[float], Awaitable[None]]
    rand: Callable[[], float]


class Flush:
    """One run; `run()` fills `report` or raises ConsentWithdrawnError/FlushEndedError."""

    def __init__(self, inputs: FlushInputs, report: FlushReport) -> None:
        self._in = inputs
        self.report = report
        # The same pages and batches as `preview` (see Batcher).
        self._batcher = Batcher(inputs.settings.batch_size, inputs.settings.max_batch_bytes)
        self._refusals = _Refusals()
        self._recorded_ids: set[str] = set()  # known to `forget` before a request left

    async def run(self) -> None:
        consent = self._in.consent()
        if not consent.uploads:
            self.report.skipped = f"mode is {consent.mode} ({consent.reason}): nothing is uploaded"
            return
        if not self._in.sender.sends:
            self.report.skipped = "sender is none: nothing is sent (set AGENT_TELEMETRY_SENDER)"
            return
        buffer = self._in.buffer()
        if buffer is None:
            return
        await self._send_pages(buffer)
        for batch in self._batcher.finish():
            await self._deliver_batch(batch)
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

    async def _deliver_batch(self, batch: OutboundBatch) -> None:
        """Send one batch; quarantine what bisection found, once the backend took something.

        A backend that refuses *every* event (a broken deploy answering 400) must not
        quarantine the whole backlog, so what is refused before anything was accepted in
        this flush is held, pending, and the next batch is tried: once the backend accepts
        something, the refusals are about those events and they are quarantined. A second
        batch refused whole with nothing accepted ends the flush, quarantining nothing:
        at most two batches are bisected against a backend that refuses everything.
        """
        found: Suspects = []
        await self._deliver(batch, bisecting=False, suspects=found)
        if self.report.batches:
            # `_accepted` already quarantined what was held before this batch.
            await self._quarantine_suspects(found)
            return
        if not found:
            return
        self._refusals.hold(found)
        if self._refusals.batches >= 2:
            raise self._refusals.ended()

    async def _deliver(self, batch: OutboundBatch, *, bisecting: bool, suspects: Suspects) -> None:
        """Send a batch until the backend decides, then act on its answer: mark it sent,
        or halve it (too large, or refused: bisection finds the events to blame)."""
        result, verdict = await self._send(batch, bisecting=bisecting)
        if verdict is Verdict.ACCEPTED:
            await self._accepted(batch, result)
        elif verdict is Verdict.SPLIT:
            if len(batch) == 1:
                await self._quarantine(batch, f"too large for the backend: {result.error}")
                self.report.quarantined += 1
            else:
                await self._bisect(batch, bisecting=bisecting, suspects=suspects)
        elif len(batch) == 1:  # REJECTED: this is the event the backend refuses
            suspects.append((batch, f"refused by the backend: {result.error}"))
        else:
            await self._bisect(batch, bisecting=True, suspects=suspects)

    async def _bisect(self, batch: OutboundBatch, *, bisecting: bool, suspects: Suspects) -> None:
        for half in split_batch(batch):
            await self._deliver(half, bisecting=bisecting, suspects=suspects)

    async def _send(self, batch: OutboundBatch, *, bisecting: bool) -> tuple[SendResult, Verdict]:
        """The first answer to act on: accepted, too large, or refused past its tries.

        Transient trouble is retried with backoff (the backend's Retry-After when it gave
        one); a configuration refusal (401/403/404) ends the flush, as does a backend that
        stays unavailable.
        """
        settings = self._in.settings
        transient = rejections = 0
        while True:
            self._check_consent()
            await self._record_id(batch.anonymous_id)
            result = await self._in.sender.send(batch)
            self.report.requests += 1
            verdict = classify(result.status)
            if verdict is Verdict.ACCEPTED:
                return result, verdict
            await self._record(batch, result, verdict)
            if verdict is Verdict.REFUSED:
                raise FlushEndedError(
                    f"the backend refused the upload ({result.error}); "
                    "check the API key and host in the config"
                )
            if verdict is Verdict.SPLIT:
                return result, verdict
            if verdict is Verdict.REJECTED:
                rejections += 1
                # Inside a bisection one refusal is enough: the first batch was tried
                # several times already, so refusals now point at the events.
                if bisecting or rejections >= settings.max_rejections:
                    return result, verdict
                await self._in.sleep(settings.backoff.delay(rejections, self._in.rand()))
                continue
            transient += 1
            await self._in.sleep(self._retry_delay(result, transient))

    async def _record_id(self, anonymous_id: str) -> None:
        """`forget` must reach this id even if the answer to this request is lost: it is
        committed to the buffer, with the backend it goes to, before the request leaves
        (once per id and flush; a flush keeps its sender to the end)."""
        if anonymous_id in self._recorded_ids or not anonymous_id:
            return
        now_ms = int(self._in.clock() * 1000)
        backend = self._in.sender.backend
        await self._writer().run(
            lambda conn: erasure.record_before_send(conn, anonymous_id, backend, now_ms)
        )
        self._recorded_ids.add(anonymous_id)

    def _retry_delay(self, result: SendResult, attempt: int) -> float:
        """Seconds before retry `attempt` of a transient failure, or FlushEndedError."""
        settings = self._in.settings
        if attempt >= settings.max_attempts:
            raise FlushEndedError(
                f"the backend is unavailable ({result.error}) after {attempt} tries; "
                "the events stay pending and the next run resumes"
            )
        delay = result.retry_after
        if delay is None:
            delay = settings.backoff.delay(attempt, self._in.rand())
        if delay > settings.max_retry_after:
            raise FlushEndedError(
                f"the backend asked to wait {delay:.0f}s ({result.error}); "
                "the events stay pending and the next run resumes"
            )
        return delay

    async def _accepted(self, batch: OutboundBatch, result: SendResult) -> None:
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
        self.report.events_sent += len(sent_ids)
        self.report.quarantined += len(refused)
        self.report.batches += 1
        # The backend accepts: refusals held before are about their events. Quarantined
        # before the next request, as every mark is.
        await self._quarantine_suspects(self._refusals.release())

    async def _quarantine_suspects(self, suspects: Suspects) -> None:
        for suspect, reason in suspects:
            await self._quarantine(suspect, reason)
            self.report.quarantined += len(suspect)

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
            sent_ms=int(self._in.clock() * 1000),
            backend=self._in.sender.backend,
            events=len(batch),
            body_sha256=result.body_sha256,
            status=verdict.value,
            http_status=result.status,
            error=result.error,
        )

    def _writer(self) -> Writer:
        buffer = self._in.buffer()
        if buffer is None:
            raise FlushEndedError("the buffer was closed during the flush")
        return buffer.writer
