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

The work between the body and the answer is `otlp_export`'s, shared with gRPC. The routes
are registered by `otlp_routes`, which loads this module on the first request.
"""

from __future__ import annotations

from aiohttp import web

from agent_telemetryd.ingest import Source
from agent_telemetryd.otlp.answers import export_answer, status_answer
from agent_telemetryd.otlp.decode import ENCODINGS, JSON, UndecodableError
from agent_telemetryd.otlp.signals import Signal
from agent_telemetryd.receivers.http_ingest import (
    RETRY_AFTER_SECONDS,
    BodyError,
    agent_from_headers,
    read_body,
    refuse_body,
)
from agent_telemetryd.receivers.otlp_export import (
    TRANSPORT,
    RetryLater,
    commit,
    decode_off_loop,
)
from agent_telemetryd.receivers.otlp_routes import OTLP_STATE
from agent_telemetryd.web_context import CONTEXT

UNSUPPORTED_TYPE = "Content-Type must be application/x-protobuf or application/json"


async def export(request: web.Request, signal: Signal) -> web.Response:
    context = request.app[CONTEXT]
    state = request.app[OTLP_STATE]
    source = Source(TRANSPORT, agent=agent_from_headers(request))
    if request.content_type not in ENCODINGS:
        return _refuse(request, BodyError(UNSUPPORTED_TYPE, status=415), source, JSON)
    encoding = request.content_type
    try:
        body = await read_body(request)
        decoded = await decode_off_loop(context, state, signal, body, encoding)
    except BodyError as error:
        return _refuse(request, error, source, encoding)
    except UndecodableError as error:
        return _refuse(request, BodyError(str(error)), source, encoding)
    try:
        committed = await commit(context, state, decoded, source)
    except RetryLater as error:
        return _retry_later(str(error), encoding)
    answer = export_answer(signal, committed.refused, committed.items, encoding)
    return _answer(200, answer, encoding)


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
