"""OTLP/HTTP in: `POST /v1/traces`, `/v1/logs`, `/v1/metrics`, binary protobuf or JSON.

Like the OpenTelemetry Collector's OTLP receiver, this one decodes, converts, hands the
events on and answers; it knows nothing of storage. The answers are the ones the OTLP
spec gives exporters to act on:
- 200 with an `Export*ServiceResponse` once the events are committed; `partial_success`
  counts the items refused (undecodable items, invalid events) and says why. Exporters
  do not retry it.
- 400 for a body that is not an OTLP request, 413 for one over the size limit, 415 for a
  Content-Type other than the two encodings: a `google.rpc.Status` saying what is wrong.
  Not retried either.
- 503 with Retry-After when the buffer could not take the events (full, or a failed
  write). Exporters retry it, and the uuids derived from each item make the retry store
  only what is missing.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from agent_telemetryd.context import CONTEXT
from agent_telemetryd.ingest import Source
from agent_telemetryd.otlp.answers import export_answer, status_answer
from agent_telemetryd.otlp.decode import ENCODINGS, JSON, UndecodableError, decode
from agent_telemetryd.otlp.decoded import Decoded
from agent_telemetryd.otlp.resources import resource_event
from agent_telemetryd.otlp.signals import LOGS, METRICS, TRACES, Signal
from agent_telemetryd.privacy.content import ContentMask
from agent_telemetryd.receivers.http_ingest import (
    BUFFER_FULL,
    RETRY_AFTER_SECONDS,
    BodyError,
    agent_from_headers,
    read_body,
    refuse_body,
)
from agent_telemetryd.store.writer import StoreFullError

TRANSPORT = "otlp"
UNSUPPORTED_TYPE = "Content-Type must be application/x-protobuf or application/json"
# Resources recorded by this process, by uuid: at most this many, then forgotten (the
# uuid still dedupes one recorded again).
MAX_RESOURCES_REMEMBERED = 1024


@dataclass
class OtlpState:
    """What the receiver keeps between requests."""

    # Content is masked here, before validation, so that its size limit counts what is
    # stored: a 200 KB prompt must not cost the span its place when only its length stays.
    mask: ContentMask = field(default_factory=ContentMask)
    resources_recorded: set[str] = field(default_factory=set)

    def recorded(self, uuids: list[str]) -> None:
        if len(self.resources_recorded) + len(uuids) > MAX_RESOURCES_REMEMBERED:
            self.resources_recorded.clear()
        self.resources_recorded.update(uuids)


OTLP_STATE = web.AppKey("otlp_state", OtlpState)
routes = web.RouteTableDef()


def add_to(app: web.Application) -> None:
    """Serve the three OTLP routes on `app` (before it starts)."""
    app[OTLP_STATE] = OtlpState()
    app.add_routes(routes)


@routes.post("/v1/traces")
async def post_traces(request: web.Request) -> web.Response:
    return await export(request, TRACES)


@routes.post("/v1/logs")
async def post_logs(request: web.Request) -> web.Response:
    return await export(request, LOGS)


@routes.post("/v1/metrics")
async def post_metrics(request: web.Request) -> web.Response:
    return await export(request, METRICS)


async def export(request: web.Request, signal: Signal) -> web.Response:
    context = request.app[CONTEXT]
    state = request.app[OTLP_STATE]
    assert context.ingestor is not None
    source = Source(TRANSPORT, agent=agent_from_headers(request))
    if request.content_type not in ENCODINGS:
        return _refuse(request, BodyError(UNSUPPORTED_TYPE, status=415), source, JSON)
    encoding = request.content_type
    mask = None if context.config.capture_content else state.mask
    try:
        body = await read_body(request)
        # On a thread: mapping 8 MiB of small spans takes seconds of Python, which must not
        # hold up every other agent's connection on the event loop meanwhile.
        decoded = await asyncio.to_thread(_decode, signal, body, encoding, mask)
    except BodyError as error:
        return _refuse(request, error, source, encoding)
    except UndecodableError as error:
        return _refuse(request, BodyError(str(error)), source, encoding)

    documents: list[dict[str, Any]] = decoded.documents
    resources = [resource_event(r) for r in decoded.resources if r.attributes]
    resources = [r for r in resources if r["uuid"] not in state.resources_recorded]
    outcome = context.ingestor.accept_documents(
        documents + resources, source, ack=True, refused=decoded.refused
    )
    if outcome.pending is not None:
        try:
            result = await outcome.pending
        except StoreFullError as error:
            return _retry_later(str(error), encoding)
        if result.refused:
            # Some of it is not in the buffer. The whole request is asked for again: what
            # was kept now comes back as duplicates of the same uuids, nothing twice.
            return _retry_later(
                f"{BUFFER_FULL}: the buffer is at its cap (store.max_events, store.max_bytes)"
                " with events not yet sent",
                encoding,
            )
    items = len(documents)
    refused = list(decoded.refused)
    refused.extend(r.reason for r in outcome.rejected if r.index < items)
    if outcome.pending is not None:  # kept (not mode off): no need to send it again
        not_kept = {r.index - items for r in outcome.rejected if r.index >= items}
        state.recorded([r["uuid"] for i, r in enumerate(resources) if i not in not_kept])
    return _answer(200, export_answer(signal, refused, decoded.items, encoding), encoding)


def _decode(signal: Signal, body: bytes, encoding: str, mask: ContentMask | None) -> Decoded:
    decoded = decode(signal, body, encoding)
    if mask is not None:
        for document in decoded.documents:
            document["properties"] = mask.properties(document["properties"])
    return decoded


def _refuse(request: web.Request, error: BodyError, source: Source, encoding: str) -> web.Response:
    """Counted as one received, rejected thing, as a bad body is on every route."""
    refuse_body(request, error, source)
    return _answer(error.status, status_answer(str(error), encoding), encoding)


def _retry_later(message: str, encoding: str) -> web.Response:
    response = _answer(503, status_answer(message, encoding), encoding)
    response.headers["Retry-After"] = RETRY_AFTER_SECONDS
    return response


def _answer(status: int, body: bytes, encoding: str) -> web.Response:
    return web.Response(status=status, body=body, content_type=encoding)
