"""From decoded documents to buffer rows: validate, transform, stamp, hand to the writer.

Receivers know only this class; it knows nothing of sockets or HTTP. What each document
becomes as a row, and its upload state under the consent mode at arrival, is
`arrival_rows.py`; here the arrival is counted and handed to the writer (in mode `off`
nothing is kept, and the counts stay in memory).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from agent_telemetryd.arrival_rows import (
    Arrival,
    Source,
    UploadGate,
    build_rows,
    planned_rows,
    turn_rows,
)
from agent_telemetryd.client_drops import CLIENT_DROPS, client_drop_counts
from agent_telemetryd.config import Mode
from agent_telemetryd.event_parts import Transform, already_checked
from agent_telemetryd.events import (
    Event,
    EventError,
    Limits,
    Validator,
    kept_local_without_unknown,
    log_reason,
    parse_line,
)
from agent_telemetryd.known_reads import ReadParts
from agent_telemetryd.known_shapes import KnownShapes
from agent_telemetryd.lazy_log import get_logger
from agent_telemetryd.log_budget import LogBudget
from agent_telemetryd.outcomes import Counters, Outcome
from agent_telemetryd.privacy.content import ContentMask
from agent_telemetryd.store.writer import Writer
from agent_telemetryd.transform_chain import TransformChain

log = get_logger("agent_telemetryd.ingest")

# The counter of lines kept local because they carried fields this daemon does not know.
UNKNOWN_FIELDS = "kept_local.unknown_fields"


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
        self._validator = validator = Validator(limits)
        self._validate = validator.validate
        self._check_line = validator.check_line
        self._mode = mode
        self._writer = writer
        self._anonymous_id = anonymous_id
        self.set_transforms(transforms)
        self._upload_gate = upload_gate
        self._clock = clock
        self.memory = Counters()
        # A newer shim sends every line so: the first says why, then one a minute.
        self._unknown_field_lines = LogBudget(first=1)
        self._rejection_lines = LogBudget()
        self._connection_listeners: list[Callable[[int | None], None]] = []

    # A reload swaps these between arrivals: each arrival binds them once, so no arrival
    # is ever handled half by the old settings and half by the new.
    def set_transforms(self, transforms: Iterable[Transform]) -> None:
        self._transforms = tuple(transforms)
        # For documents a receiver has masked already: the same chain without the mask,
        # which would find nothing left to do (masking twice changes nothing).
        self._transforms_after_mask = tuple(
            t for t in self._transforms if not isinstance(t, ContentMask)
        )
        # The same chain run on an event's parts, planned per shape (None when the list is
        # not the daemon's own): for the lines `check_line` took.
        self._chain = chain = TransformChain.of(self._transforms)
        # Lines of a shape seen before, taken whole to their row's parts (same chain).
        self._shapes = (
            KnownShapes(self._validator, chain.vocabulary, chain.mask, chain.scrubber)
            if chain is not None
            else None
        )

    def set_upload_gate(self, upload_gate: UploadGate | None) -> None:
        self._upload_gate = upload_gate

    @property
    def upload_gate(self) -> UploadGate | None:
        return self._upload_gate

    def queued_events(self) -> int:
        """Events handed to the writer and not yet taken into a commit."""
        writer = self._writer()
        return writer.queued_events if writer is not None else 0

    def accept_lines(
        self,
        lines: list[bytes],
        source: Source,
        *,
        ack: bool = False,
        marks: dict[str, str] | None = None,
        gathered: bool = False,
    ) -> Outcome:
        """NDJSON (ingest.sock, spool files): nothing to answer, but `ack` gives a future
        that resolves after the commit; `marks` are meta rows written in the same one;
        `gathered`: the lines were gathered over a read turn, so the writer does not hold
        a few of them back for company (they had theirs).

        A shim's drop-count line is recognised by its shape before event validation and
        its counts go in with the events around it, in the same transaction.
        """
        # A line that names no agent gets the source's, which goes through the transforms
        # too: the known shapes are planned for the agent in the line only.
        shapes = self._shapes if source.agent is None else None
        if shapes is not None:
            # The usual read: every line of a shape seen before, taken all at once.
            read = shapes.read_parts(lines)
            if read is not None:
                return self._submit_read(read, source, ack=ack, marks=marks, gathered=gathered)
        documents: list[Any] = []
        bad: list[str] = []
        drops: dict[str, int] = {}
        unknown = 0
        check_line = self._check_line
        row_parts = shapes.row_parts if shapes is not None else None
        for line in lines:
            if row_parts is not None:
                parts = row_parts(line)
                if parts is not None:
                    documents.append(parts)
                    continue
            # The common line, decoded and checked at once; a tuple is what no decoder
            # makes of JSON, so _build_rows knows it from a document to validate.
            checked = check_line(line)
            if checked is not None:
                documents.append(checked)
                continue
            try:
                document = parse_line(line)
                if type(document) is dict and CLIENT_DROPS in document:
                    for reason, count in client_drop_counts(document).items():
                        drops[reason] = drops.get(reason, 0) + count
                    continue
            except EventError as error:
                bad.append(str(error))
                continue
            kept = kept_local_without_unknown(document) if type(document) is dict else None
            if kept is not None:
                document = kept
                unknown += 1
            documents.append(document)
        if unknown:
            self._note_unknown_fields(unknown, source)
        return self._submit(
            documents,
            source,
            ack=ack,
            extra_rejections=bad,
            dropped=drops,
            marks=marks,
            gathered=gathered,
            noted={UNKNOWN_FIELDS: unknown} if unknown else None,
        )

    def _note_unknown_fields(self, lines: int, source: Source) -> None:
        if self._unknown_field_lines.allows(lines):
            log.warning(
                "event_kept_local_unknown_fields",
                reason="fields this daemon does not know (names not logged): from an agent "
                "shim newer than the daemon? kept, never uploaded; upgrade agent-telemetry",
                transport=source.transport,
                pid=source.pid,
                lines_so_far=self._unknown_field_lines.seen,
            )

    def accept_turn(self, reads: list[tuple[list[bytes], Source]]) -> list[Outcome]:
        """`accept_lines` of each of `reads` (a read's lines and its source: ingest.sock's
        connections as one turn read them), in their order, an outcome each: in one write
        when every line is of a known shape and the reads' rows differ only by their pid;
        else each read by itself, exactly as `accept_lines` takes it.

        A read's fixed costs (the decoder's and column checks' set-up, building its rows,
        a write request) are then paid once a turn, not once a connection. A read of known
        lines decides and remembers nothing (known_reads.py), so the lines taken together
        or read after read make the same rows in the same order."""
        if len(reads) > 1:
            taken = self._turn_at_once(reads)
            if taken is not None:
                return taken
        return [self.accept_lines(lines, source, gathered=True) for lines, source in reads]

    def _turn_at_once(self, reads: list[tuple[list[bytes], Source]]) -> list[Outcome] | None:
        first = reads[0][1]
        # A source naming an agent, and an upload state that depends on the source's
        # backlog or on each event's time, make rows that are their read's own.
        if self._shapes is None or any(
            source.agent is not None
            or source.upload_from_ms is not None
            or source.transport != first.transport
            for _, source in reads
        ):
            return None
        mode, received_ms, anonymous_id = self._arrival_stamp()
        if mode == Mode.UPLOAD and self._upload_gate is not None:
            return None
        read = self._shapes.read_parts([line for lines, _ in reads for line in lines])
        if read is None:
            return None
        pids = [(source.pid, len(lines)) for lines, source in reads]
        arrival = turn_rows(
            read,
            first.transport,
            pids,
            mode=mode,
            received_ms=received_ms,
            anonymous_id=anonymous_id,
        )
        whole = self._hand_over(
            arrival, len(read.names), first, mode, False, (), None, None, gathered=True
        )
        if not whole.kept:  # mode off: counted, nothing kept
            return [Outcome([], None, 0) for _ in reads]
        return [Outcome([], whole.pending, size, list(range(size))) for _, size in pids]

    def discard_unread(self, events: int) -> None:
        """Count events thrown away unread (spool files in mode `off`): received, and
        dropped as `mode_off`, in memory since nothing is written in `off`."""
        if events:
            self.memory.add("received", events)
            self.memory.add("dropped.mode_off", events)

    def on_agent_connected(self, listener: Callable[[int | None], None]) -> None:
        """Call `listener(pid)` whenever an agent connects to a receiver."""
        self._connection_listeners.append(listener)

    def agent_connected(self, pid: int | None) -> None:
        """An agent reached the daemon, or left it (a receiver calls this): it may have
        left events in the spool while it could not hand them over."""
        for listener in self._connection_listeners:
            listener(pid)

    def accept_documents(
        self,
        documents: list[Any],
        source: Source,
        *,
        ack: bool,
        refused: Iterable[str] = (),
        dropped: dict[str, int] | None = None,
        content_masked: bool = False,
    ) -> Outcome:
        """`refused`: one reason for each item the receiver could not make a document of,
        counted as received and rejected; `dropped`: items the receiver did not hand over,
        by reason, counted as received and dropped. Both in the same write as the rest.
        `content_masked`: the receiver has masked content in every document with a
        `ContentMask` (whatever `capture_content` says now), so it is not masked again."""
        return self._submit(
            documents,
            source,
            ack=ack,
            extra_rejections=refused,
            dropped=dropped,
            content_masked=content_masked,
        )

    def accept_events(
        self,
        events: list[Event],
        source: Source,
        *,
        ack: bool,
        refused: Iterable[str] = (),
        content_masked: bool = False,
    ) -> Outcome:
        """`accept_documents` for events a receiver has made and checked itself against
        every rule `Validator` applies (the OTLP mapping does): they are not validated
        again, only transformed (allowlist, vocabulary, scrubbing) and stored."""
        return self._submit(
            events,
            source,
            ack=ack,
            extra_rejections=refused,
            content_masked=content_masked,
            validate=already_checked,
        )

    def count_torn_line(self, source: Source) -> None:
        """Count a last line its sender left unfinished (`dropped.torn_line`)."""
        self._submit([], source, ack=False, extra_rejections=(), dropped={"torn_line": 1})

    def reject_unparsable(self, reason: str, source: Source) -> None:
        """Count one thing that never became a document (an oversize line, bad bytes)."""
        self._submit([], source, ack=False, extra_rejections=[reason])

    def _submit(
        self,
        documents: list[Any],
        source: Source,
        *,
        ack: bool,
        extra_rejections: Iterable[str],
        dropped: dict[str, int] | None = None,
        marks: dict[str, str] | None = None,
        content_masked: bool = False,
        validate: Callable[[Any], Event] | None = None,
        gathered: bool = False,
        noted: dict[str, int] | None = None,
    ) -> Outcome:
        mode, received_ms, anonymous_id = self._arrival_stamp()
        transforms = self._transforms_after_mask if content_masked else self._transforms
        arrival = build_rows(
            documents,
            source,
            mode=mode,
            received_ms=received_ms,
            anonymous_id=anonymous_id,
            gate=self._upload_gate,
            transforms=transforms,
            validate=validate or self._validate,
            chain=self._chain if transforms is self._transforms else None,
        )
        return self._hand_over(
            arrival,
            len(documents),
            source,
            mode,
            ack,
            extra_rejections,
            dropped,
            marks,
            gathered=gathered,
            noted=noted,
        )

    def _submit_read(
        self,
        read: ReadParts,
        source: Source,
        *,
        ack: bool,
        marks: dict[str, str] | None,
        gathered: bool,
    ) -> Outcome:
        """`_submit` for a read whose lines are all of known shapes (the same rows)."""
        mode, received_ms, anonymous_id = self._arrival_stamp()
        arrival = planned_rows(
            read,
            source,
            mode=mode,
            received_ms=received_ms,
            anonymous_id=anonymous_id,
            gate=self._upload_gate,
        )
        return self._hand_over(
            arrival, len(read.names), source, mode, ack, (), None, marks, gathered=gathered
        )

    def _arrival_stamp(self) -> tuple[str, int, str]:
        """What every row of an arrival is stamped with: the consent mode (plain text: it is
        bound into every row), the receipt time in ms, and the anonymous id (none in `off`,
        where nothing is kept)."""
        mode = str(self._mode())
        received_ms = int(self._clock() * 1000)
        return mode, received_ms, self._anonymous_id() if mode != Mode.OFF else ""

    def _hand_over(
        self,
        arrival: Arrival,
        documents: int,
        source: Source,
        mode: str,
        ack: bool,
        extra_rejections: Iterable[str],
        dropped: dict[str, int] | None,
        marks: dict[str, str] | None,
        *,
        gathered: bool = False,
        noted: dict[str, int] | None = None,
    ) -> Outcome:
        """Count `arrival` (of `documents` documents) and hand its rows to the writer;
        `noted` are further counters to add in the same transaction."""
        counters = self._count(arrival, documents, extra_rejections, source)
        counters.update(noted or {})
        for reason, count in (dropped or {}).items():
            if count:
                counters["received"] += count
                counters[f"dropped.{reason}"] = counters.get(f"dropped.{reason}", 0) + count
        writer = self._writer() if mode != Mode.OFF else None
        if writer is None:
            for name, value in counters.items():
                self.memory.add(name, value)
            self.memory.add("dropped.mode_off", len(arrival.rows))
            return Outcome(arrival.rejected, None, 0)
        pending = writer.submit(arrival.rows, counters, ack=ack, meta=marks, gathered=gathered)
        return Outcome(arrival.rejected, pending, len(arrival.rows), arrival.row_documents)

    def _count(
        self, arrival: Arrival, documents: int, extra_rejections: Iterable[str], source: Source
    ) -> dict[str, int]:
        """The counters this arrival adds, in the same transaction as its rows."""
        reasons = [r.reason for r in arrival.rejected]
        reasons.extend(extra_rejections)
        self._log_rejections(reasons, source)
        # Each line that failed to parse is a received thing too: received = kept + rejected
        # + dropped holds for every arrival, whatever it was.
        counters = {
            "received": documents + len(reasons) - len(arrival.rejected),
            "rejected": len(reasons),
        }
        if arrival.filtered:
            counters["dropped.not_allowlisted"] = arrival.filtered
        if arrival.rate_limited:
            counters["rate_limited"] = arrival.rate_limited
        return counters

    def _log_rejections(self, reasons: list[str], source: Source) -> None:
        # Hostile input must not flood the journal (log_budget.py). The reason names the
        # problem; the content is never logged.
        for reason in reasons:
            if self._rejection_lines.allows():
                log.warning(
                    "event_rejected",
                    reason=log_reason(reason),
                    transport=source.transport,
                    pid=source.pid,
                    rejected_so_far=self._rejection_lines.seen,
                )
