"""What every OTLP receiver does with a request body, whichever transport brought it.

Decode it off the event loop, hand the events to the ingestor, wait for the commit, and
say what happened: which items were refused and why, or that the buffer could not take
them. HTTP and gRPC each turn that into their own answer (a status code and body, a gRPC
status); the mapping, content masking and accounting are the same for both.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from agent_telemetryd.context import DaemonContext
from agent_telemetryd.events import Event, EventError, Limits
from agent_telemetryd.ingest import Ingestor, Source
from agent_telemetryd.otlp.decode import decode
from agent_telemetryd.otlp.decoded import Decoded
from agent_telemetryd.otlp.event_checks import EventChecks
from agent_telemetryd.otlp.resources import resource_event
from agent_telemetryd.otlp.signals import Signal
from agent_telemetryd.outcomes import Outcome
from agent_telemetryd.receivers.http_ingest import BUFFER_FULL
from agent_telemetryd.receivers.otlp_state import OtlpState
from agent_telemetryd.store.writer import StoreFullError

TRANSPORT = "otlp"
BUFFER_AT_CAP = (
    f"{BUFFER_FULL}: the buffer is at its cap (store.max_events, store.max_bytes)"
    " with events not yet sent"
)


@dataclass(frozen=True, slots=True)
class Committed:
    """The request's events are in the buffer (or were declined by mode off): the exporter
    must not send them again. `refused` holds one reason per item that was not kept."""

    refused: list[str]
    items: int


class RetryLater(Exception):
    """The buffer could not take the events; the exporter should send them again later.

    `buffer_full`: the buffer is at its cap (it may clear when events are uploaded or
    expire); otherwise a write failed (the disk, most likely).
    """

    def __init__(self, message: str, *, buffer_full: bool) -> None:
        super().__init__(message)
        self.buffer_full = buffer_full


async def decode_off_loop(
    context: DaemonContext, state: OtlpState, signal: Signal, body: bytes, encoding: str
) -> Decoded:
    """Decode, map, mask and check on the receivers' decoding thread: 8 MiB of small
    spans is seconds of Python, which must not hold up every other agent's connection on
    the event loop meanwhile.

    Raises `UndecodableError` for a body that is not an OTLP request."""
    mask = None if context.config.capture_content else state.mask
    checks = event_checks(context, state)
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(state.decoder(), decode, signal, body, encoding, checks, mask)


def event_checks(context: DaemonContext, state: OtlpState) -> EventChecks:
    """The receivers' `EventChecks`, with the ingestor's limits (read at start: a reload
    does not change them)."""
    if state.checks is None:
        config = context.config
        limits = Limits(
            max_event_bytes=config.max_event_bytes,
            max_depth=config.max_depth,
            max_keys=config.max_keys,
        )
        state.checks = EventChecks(limits)
    return state.checks


async def commit(
    context: DaemonContext, state: OtlpState, decoded: Decoded, source: Source
) -> Committed:
    """Hand the events (and the resources not recorded yet) to the ingestor and wait for
    the commit. Raises `RetryLater` when the buffer could not take them all."""
    assert context.ingestor is not None
    outcome, resources = hand_over(context.ingestor, state, decoded, source)
    if outcome.pending is not None:
        try:
            result = await outcome.pending
        except StoreFullError as error:
            raise RetryLater(str(error), buffer_full=False) from None
        if result.refused:
            # Some of it is not in the buffer. The whole request is asked for again: what
            # was kept now comes back as duplicates of the same uuids, nothing twice.
            raise RetryLater(BUFFER_AT_CAP, buffer_full=True)
    items = len(decoded.events)
    refused = list(decoded.refused)
    refused.extend(r.reason for r in outcome.rejected if r.index < items)
    if outcome.pending is not None:  # kept (not mode off): no need to send it again
        not_kept = {r.index - items for r in outcome.rejected if r.index >= items}
        state.recorded([uuid for i, uuid in enumerate(resources) if i not in not_kept])
    return Committed(refused, decoded.items)


def hand_over(
    ingestor: Ingestor, state: OtlpState, decoded: Decoded, source: Source
) -> tuple[Outcome, list[str]]:
    """Give the ingestor the request's events and those of its resources not recorded yet,
    in one write; returns its outcome and the uuids of the resources, in the order they
    follow the items."""
    resources: list[Event] = []
    not_resources: list[str] = []  # counted as received and rejected, not told the exporter
    for info in decoded.resources:
        if not info.attributes:
            continue
        document = resource_event(info)
        if document["uuid"] in state.resources_recorded:
            continue
        try:
            resources.append(decoded.checks.document(document, decoded.mask))
        except EventError as error:
            not_resources.append(str(error))
    outcome = ingestor.accept_events(
        decoded.events + resources,
        source,
        ack=True,
        refused=decoded.refused + not_resources,
        content_masked=decoded.content_masked,
    )
    return outcome, [resource.uuid or "" for resource in resources]


def reject_body(context: DaemonContext, reason: str, source: Source) -> None:
    """Count a body that never became items as one received, rejected thing, as a bad body
    is on every route; the reason is logged, the content never is."""
    assert context.ingestor is not None
    context.ingestor.reject_unparsable(reason, source)
