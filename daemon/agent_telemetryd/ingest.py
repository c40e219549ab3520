"""From decoded documents to buffer rows: validate, transform, stamp, hand to the writer.

Receivers know only this class; it knows nothing of sockets or HTTP. What happens to an
event here depends on the consent mode at the moment it arrives (DESIGN §8): in `off`
nothing is kept, in `local` it is kept for the user, in `upload` it is also pending upload
unless its source is over the rate limit.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import orjson
import structlog

from agent_telemetry._wire import uuid7
from agent_telemetryd import __version__
from agent_telemetryd.events import Event, EventError, Limits, log_reason, parse_line, validate
from agent_telemetryd.store.writer import Writer, WriteResult

log = structlog.get_logger("agent_telemetryd.ingest")

# A transform returns the event to keep (possibly changed) or None to drop it quietly.
Transform = Callable[[Event], Event | None]
# Says whether one more event from this source may become eligible for upload now.
UploadGate = Callable[[str, float], bool]


@dataclass(frozen=True, slots=True)
class Source:
    transport: str  # unix, http, posthog, otlp
    agent: str | None = None
    pid: int | None = None


@dataclass(frozen=True, slots=True)
class Rejection:
    index: int
    reason: str


@dataclass(slots=True)
class Outcome:
    rejected: list[Rejection]
    pending: asyncio.Future[WriteResult] | None  # resolves after commit, when asked for
    kept: int
    filtered: list[int]  # indices the allowlist dropped


class Counters:
    """Counts kept in memory for what never reaches the buffer (e.g. mode off)."""

    def __init__(self) -> None:
        self.values: dict[str, int] = {}

    def add(self, name: str, amount: int = 1) -> None:
        self.values[name] = self.values.get(name, 0) + amount


class Ingestor:
    def __init__(
        self,
        *,
        limits: Limits,
        mode: Callable[[], str],
        writer: Callable[[], Writer | None],
        anonymous_id: Callable[[], str],
        transforms: Iterable[Transform] = (),
        upload_gate: UploadGate | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._limits = limits
        self._mode = mode
        self._writer = writer
        self._anonymous_id = anonymous_id
        self._transforms = tuple(transforms)
        self._upload_gate = upload_gate
        self._clock = clock
        self.memory = Counters()
        self._logged_rejections = 0

    def accept_lines(self, lines: list[bytes], source: Source) -> None:
        """NDJSON from ingest.sock: fire-and-forget, nothing to answer."""
        documents: list[Any] = []
        bad: list[str] = []
        for line in lines:
            try:
                documents.append(parse_line(line))
            except EventError as error:
                bad.append(str(error))
        self._submit(documents, source, ack=False, extra_rejections=bad)

    def accept_documents(
        self, documents: list[Any], source: Source, *, ack: bool, refused: Iterable[str] = ()
    ) -> Outcome:
        """`refused`: one reason for each item the receiver could not make a document of,
        counted as received and rejected in the same write."""
        return self._submit(documents, source, ack=ack, extra_rejections=refused)

    def reject_unparsable(self, reason: str, source: Source) -> None:
        """Count one thing that never became a document (an oversize line, bad bytes)."""
        self._submit([], source, ack=False, extra_rejections=[reason])

    def _submit(
        self, documents: list[Any], source: Source, *, ack: bool, extra_rejections: Iterable[str]
    ) -> Outcome:
        rejected: list[Rejection] = []
        rows: list[tuple[Any, ...]] = []
        now = self._clock()
        received_ms = int(now * 1000)
        mode = self._mode()
        filtered: list[int] = []  # indices the allowlist dropped
        rate_limited = 0
        anonymous_id = self._anonymous_id() if mode != "off" else ""
        # Everything the loop needs per event, bound once per batch: this runs for every event.
        limits, transforms, gate = self._limits, self._transforms, self._upload_gate
        dumps, append = orjson.dumps, rows.append
        pid, transport, default_agent = source.pid, source.transport, source.agent or "unknown"
        uploading = mode == "upload"
        for index, document in enumerate(documents):
            try:
                event: Event | None = validate(document, limits)
            except EventError as error:
                rejected.append(Rejection(index, str(error)))
                continue
            # Ids are checked hex, nothing for a transform to change, and transforms that
            # rebuild the event would not carry them.
            trace_id, span_id, parent_span_id = event.trace_id, event.span_id, event.parent_span_id
            try:
                for transform in transforms:
                    event = transform(event)
                    if event is None:
                        break
            except Exception as error:  # one event lost, never the batch or the connection
                # Kept unscrubbed would be worse than not kept: reject it, say so, go on.
                log.error("event_transform_failed", error_type=type(error).__name__)
                rejected.append(Rejection(index, "could not be scrubbed; not kept"))
                continue
            if event is None:
                filtered.append(index)
                continue
            agent = event.agent or default_agent
            upload = "local"
            if uploading:
                if gate is None or gate(agent, now):
                    upload = "pending"
                else:
                    upload = "rate_limited"
                    rate_limited += 1
            ts_ms = event.ts_ms
            append(
                (
                    event.uuid or uuid7(),
                    event.event,
                    ts_ms if ts_ms is not None else received_ms,
                    received_ms,
                    dumps(event.properties).decode(),
                    agent,
                    pid,
                    transport,
                    mode,
                    upload,
                    anonymous_id,
                    __version__,
                    trace_id,
                    span_id,
                    parent_span_id,
                )
            )
        reasons = [r.reason for r in rejected]
        reasons.extend(extra_rejections)
        self._log_rejections(reasons, source)
        # Each line that failed to parse is a received thing too: received = kept + rejected
        # + dropped holds for every arrival, whatever it was.
        counters = {
            "received": len(documents) + len(reasons) - len(rejected),
            "rejected": len(reasons),
        }
        if filtered:
            counters["dropped.not_allowlisted"] = len(filtered)
        if rate_limited:
            counters["rate_limited"] = rate_limited
        writer = self._writer() if mode != "off" else None
        if writer is None:
            for name, value in counters.items():
                self.memory.add(name, value)
            self.memory.add("dropped.mode_off", len(rows))
            return Outcome(rejected, None, 0, filtered)
        pending = writer.submit(rows, counters, ack=ack)
        return Outcome(rejected, pending, len(rows), filtered)

    def _log_rejections(self, reasons: list[str], source: Source) -> None:
        # Hostile input must not flood the journal: log the first hundred, then every
        # thousandth. The reason names the problem; the content is never logged.
        for reason in reasons:
            self._logged_rejections += 1
            n = self._logged_rejections
            if n <= 100 or n % 1000 == 0:
                log.warning(
                    "event_rejected",
                    reason=log_reason(reason),
                    transport=source.transport,
                    pid=source.pid,
                    rejected_so_far=n,
                )
