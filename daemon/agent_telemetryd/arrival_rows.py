"""The rows one arrival's documents become, each stamped with what the daemon adds. No I/O.

A row carries the receipt time, the source, the consent mode at receipt and, in mode
`upload`, its upload state: pending at once, pending later when its source is over the
rate limit (it waits, `eligible_ms`), or `rate_limited` for good when that source already
has a full backlog waiting. In any other mode a row is local and never sent, and so is an
event its agent sent as `local_only` (its user set DO_NOT_TRACK where the agent runs).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from itertools import repeat
from operator import add
from typing import Any

from agent_telemetry._wire import uuid7
from agent_telemetryd import __version__
from agent_telemetryd.config import Mode
from agent_telemetryd.event_parts import Transform, stored_parts
from agent_telemetryd.events import Event, EventError
from agent_telemetryd.known_reads import ReadParts
from agent_telemetryd.known_shapes import RowParts
from agent_telemetryd.store.rows import EventRow, UploadState
from agent_telemetryd.transform_chain import TransformChain

# Bound once: plain strings bind faster than the enum members on the hot path.
LOCAL, PENDING, RATE_LIMITED = (
    UploadState.LOCAL.value,
    UploadState.PENDING.value,
    UploadState.RATE_LIMITED.value,
)
# When one more event from this source (received at ms, with this uuid if it came with
# one) becomes eligible for upload, in ms; None when it is refused (its source's backlog is
# full). The uuid lets a retry of an event already placed get its place back, not another.
UploadGate = Callable[[str, int, str | None], int | None]


@dataclass(frozen=True, slots=True)
class Source:
    transport: str  # unix, http, posthog, otlp, spool
    agent: str | None = None
    pid: int | None = None
    # Events tracked before this time (Unix ms, by their timestamp) are kept local even in
    # mode upload: they may have been tracked under another mode (spool files).
    upload_from_ms: int | None = None
    # With `upload_from_ms`: the latest an event can have been tracked (a spool file's last
    # write). A timestamp after it is not when the event was tracked, so it proves nothing
    # about the mode then, and the event stays local.
    tracked_by_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Rejection:
    index: int
    reason: str


@dataclass(slots=True)
class Arrival:
    """What one arrival's documents became: rows to keep, and what was not kept."""

    rows: list[EventRow] = field(default_factory=list)
    row_documents: list[int] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    filtered: int = 0  # dropped by the allowlist
    rate_limited: int = 0


def build_rows(
    documents: list[Any],
    source: Source,
    *,
    mode: str,
    received_ms: int,
    anonymous_id: str,
    gate: UploadGate | None,
    transforms: tuple[Transform, ...],
    validate: Callable[[Any], Event],
    chain: TransformChain | None,
) -> Arrival:
    """The rows `documents` become, received now from `source` while `mode` holds;
    `chain` is the daemon's own transforms planned per shape, when `transforms` are them."""
    arrival = Arrival()
    # Everything the loop needs per event, bound once per batch: this runs for every event.
    uploading = mode == Mode.UPLOAD
    append, rejected = arrival.rows.append, arrival.rejected
    new_row = tuple.__new__
    pid, transport, source_agent = source.pid, source.transport, source.agent
    upload_from = source.upload_from_ms
    tracked_by = source.tracked_by_ms if source.tracked_by_ms is not None else 2**62
    for index, document in enumerate(documents):
        try:
            if type(document) is RowParts:  # a line of a known shape: all done
                name, properties_json, ts_ms, uuid, agent = document
                trace_id = span_id = parent_span_id = None
            else:
                parts = stored_parts(document, source_agent, transforms, validate, chain)
                if parts is None:
                    arrival.filtered += 1
                    continue
                name, properties_json, ts_ms, uuid, agent = parts[:5]
                trace_id, span_id, parent_span_id = parts[5:]
        except EventError as error:
            rejected.append(Rejection(index, str(error)))
            continue
        agent = agent or "unknown"
        eligible_ms = None
        if not uploading:
            upload = LOCAL
        elif type(document) is dict and document.get("local_only"):
            # Its agent's user set DO_NOT_TRACK: kept for them, never sent. (Validation
            # let only true or false through; the fast paths never take such a line.)
            upload = LOCAL
        elif upload_from is not None and (
            ts_ms is None or ts_ms < upload_from or ts_ms > tracked_by
        ):
            upload = LOCAL  # perhaps tracked before upload was chosen: never sent
        elif gate is None:
            upload = PENDING
        elif (eligible_ms := gate(agent, received_ms, uuid)) is not None:
            upload = PENDING
            if eligible_ms <= received_ms:
                eligible_ms = None  # eligible at once: the common case stays NULL
        else:
            upload = RATE_LIMITED
            arrival.rate_limited += 1
        arrival.row_documents.append(index)
        # In EventRow's field order, made as its own _make() does (EventRow(...) runs
        # a Python __new__: three times the cost). tests/test_store_vocabulary.py
        # checks every field lands in its column.
        append(
            new_row(
                EventRow,
                (
                    uuid or uuid7(),
                    name,
                    ts_ms if ts_ms is not None else received_ms,
                    received_ms,
                    properties_json,
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
                    eligible_ms,
                ),
            )
        )
    return arrival


def planned_rows(
    read: ReadParts,
    source: Source,
    *,
    mode: str,
    received_ms: int,
    anonymous_id: str,
    gate: UploadGate | None,
) -> Arrival:
    """The rows of a read whose lines were all of known shapes (`KnownShapes.read_parts`):
    what `build_rows` makes of them, made in C (a zip over the columns) while every row
    has the same upload state."""
    if mode == Mode.UPLOAD and (gate is not None or source.upload_from_ms is not None):
        # Each row's state depends on its source's backlog or its time: row by row.
        documents = list(
            map(
                tuple.__new__,
                repeat(RowParts),
                zip(*read, strict=True),
            )
        )
        return build_rows(
            documents,
            source,
            mode=mode,
            received_ms=received_ms,
            anonymous_id=anonymous_id,
            gate=gate,
            transforms=(),
            validate=_unused,
            chain=None,
        )
    n = len(read.names)
    shared = (source.pid, *_shared_after_pid(source.transport, mode, anonymous_id))
    return _known_rows(read, received_ms, repeat(shared, n))


def turn_rows(
    read: ReadParts,
    transport: str,
    pids: list[tuple[int | None, int]],
    *,
    mode: str,
    received_ms: int,
    anonymous_id: str,
) -> Arrival:
    """`planned_rows` for the reads of several connections of one transport taken as one
    read (`Ingestor.accept_turn`), for sources with no agent, no upload gate and no
    `upload_from_ms`: `pids` holds each read's pid and number of lines, in the read's
    order, and each row gets its own read's pid."""
    after_pid = _shared_after_pid(transport, mode, anonymous_id)
    shared: list[tuple[Any, ...]] = []
    for pid, lines in pids:
        shared += repeat((pid, *after_pid), lines)
    if len(shared) != len(read.names):
        raise ValueError(f"{len(read.names)} lines read, but pids given for {len(shared)}")
    return _known_rows(read, received_ms, shared)


def _shared_after_pid(transport: str, mode: str, anonymous_id: str) -> tuple[Any, ...]:
    """What the rows of a read share after their pid, in EventRow's field order (the trace
    context and eligible_ms are None)."""
    state = PENDING if mode == Mode.UPLOAD else LOCAL
    return (transport, mode, state, anonymous_id, __version__, None, None, None, None)


def _known_rows(read: ReadParts, received_ms: int, shared: Iterable[tuple[Any, ...]]) -> Arrival:
    """A read's rows, made in C: each row's own values (see build_rows), then `shared`."""
    n = len(read.names)
    received, properties = repeat(received_ms, n), read.properties
    own = zip(read.uuids, read.names, read.ts_ms, received, properties, read.agents, strict=True)
    rows = list(map(tuple.__new__, repeat(EventRow, n), map(add, own, shared)))
    return Arrival(rows, list(range(n)))


def _unused(document: Any) -> Event:
    raise AssertionError("a read's rows are all of known shapes: nothing to validate")
