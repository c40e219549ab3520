"""HTTP event ingestion: `POST /v1/events`, answered only after the commit."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from agent_telemetryd.arrival_rows import Rejection
from agent_telemetryd.context import DaemonContext
from agent_telemetryd.events import EventError, parse_line
from agent_telemetryd.ingest import Source
from agent_telemetryd.outcomes import Outcome
from agent_telemetryd.store.writer import StoreFullError
from agent_telemetryd.web_context import CONTEXT

# The most one request may carry, counted after any compression is undone (read_body,
# posthog_capture.inflate_gzip); the apps' client_max_size too.
MAX_BODY_BYTES = 8 * 1024 * 1024
# The most events one request may carry. 8 MiB of the smallest events is half a million of
# them: checked and turned into rows in one go, they held the event loop for seconds
# (every socket and the CLI waited) and grew the daemon by hundreds of MB for good.
MAX_EVENTS_PER_REQUEST = 10_000
# Asked of a client whose events the buffer could not take (a failed write, a full
# buffer): the same short wait for both, as neither says when it will have cleared.
RETRY_AFTER_SECONDS = "5"
BUFFER_FULL = "buffer full"
_READ_PIECE_BYTES = 256 * 1024
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# A header's bytes that are not UTF-8 reach a handler as lone surrogates (aiohttp decodes
# with surrogateescape): no UTF-8 encoder, SQLite's included, takes them.
_NOT_UNICODE = re.compile("[\ud800-\udfff]")
routes = web.RouteTableDef()


class BodyError(ValueError):
    """A request body that never became events: answered with `status` and counted as one
    received, one rejected thing, as a bad line on ingest.sock is."""

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.status = status


def too_large(what: str) -> BodyError:
    return BodyError(
        f"{what} more than {MAX_BODY_BYTES} bytes, the limit for a request body", status=413
    )


def check_count(field: str, items: list[Any]) -> list[Any]:
    """`items`, unless there are more than one request may carry (413, nothing kept)."""
    if len(items) > MAX_EVENTS_PER_REQUEST:
        raise BodyError(
            f"field '{field}' has {len(items)} events; the limit is {MAX_EVENTS_PER_REQUEST}"
            " a request (send them in smaller batches)",
            status=413,
        )
    return items


def agent_from_headers(request: web.Request) -> str | None:
    return clean_agent_name(request.headers.get("X-Agent-Name"))


def clean_agent_name(name: object) -> str | None:
    """A source name as a client gave it, made valid: no control characters, what was not
    UTF-8 as U+FFFD, 100 characters at most."""
    if not isinstance(name, str) or not name:
        return None
    return _NOT_UNICODE.sub("\ufffd", _CONTROL.sub("", name))[:100] or None


async def read_body(request: web.Request) -> bytes:
    """The body (a Content-Encoding undone by aiohttp as it arrives), at most the limit."""
    body = bytearray()
    try:
        # Piece by piece, not request.read(): that joins everything aiohttp has inflated
        # so far into one more copy, which for a compression bomb is tens of MB at a time.
        async for piece in request.content.iter_chunked(_READ_PIECE_BYTES):
            body += piece
            if len(body) > MAX_BODY_BYTES:
                raise too_large("request body is")
    except web.RequestPayloadError:
        # Left to aiohttp, a body that does not decode as its Content-Encoding is a 500
        # with a traceback in the log. (A client gone mid-body lands here too; no one
        # reads that answer, but its body is counted all the same.) Marking the body read
        # to its end stops aiohttp from reading on after the answer, which would log a
        # traceback each time: a journal flood for whoever sends bad bodies in a loop.
        request.content.feed_eof()
        encoding = _CONTROL.sub("", request.headers.get("Content-Encoding", ""))[:20]
        reason = f"not valid {encoding} (its Content-Encoding)" if encoding else "incomplete"
        raise BodyError(f"request body is {reason}") from None
    return bytes(body)


def refuse_body(request: web.Request, error: BodyError, source: Source) -> None:
    """Count a body that is not events; the reason is logged, the content never is."""
    context = request.app[CONTEXT]
    assert context.ingestor is not None
    context.ingestor.reject_unparsable(str(error), source)


async def answer(outcome: Outcome, context: DaemonContext) -> web.Response:
    """202 after commit, invalid and refused events listed by index; 400 when nothing in it
    was valid; 503 with Retry-After when the buffer could keep none of it."""
    mode = context.consent.mode
    rejected = list(outcome.rejected)
    inserted = duplicates = refused = 0
    if outcome.pending is not None:
        try:
            result = await outcome.pending
        except StoreFullError as error:
            return _retry_later({"error": str(error)})
        inserted, duplicates, refused = result.inserted, result.duplicates, result.refused
        if refused:
            refused_documents = outcome.documents_of(result.refused_rows)
            rejected.extend(Rejection(index, BUFFER_FULL) for index in refused_documents)
            rejected.sort(key=lambda rejection: rejection.index)
    body: dict[str, Any] = {
        "accepted": inserted,
        "duplicates": duplicates,
        "rejected": [{"index": r.index, "reason": r.reason} for r in rejected],
        "mode": mode,
    }
    if refused:
        body["refused_buffer_full"] = refused
        if not inserted and not duplicates:
            # Nothing of this request is in the buffer: a 2xx would tell the client its
            # events were delivered (202 only once they are committed).
            body["error"] = (
                f"{BUFFER_FULL}: the buffer is at its cap (store.max_events, store.max_bytes)"
                " with events not yet sent; none of this request was kept"
            )
            return _retry_later(body)
    if rejected and not outcome.kept and not duplicates:
        return web.json_response(body, status=400)
    return web.json_response(body, status=202)


def _retry_later(body: dict[str, Any]) -> web.Response:
    return web.json_response(body, status=503, headers={"Retry-After": RETRY_AFTER_SECONDS})


def _events_in(body: bytes) -> list[Any]:
    """One event, or `{"events": [...]}`, as a list of documents."""
    try:
        document = parse_line(body)
    except EventError as error:
        raise BodyError(f"request body is {error}") from None
    if isinstance(document, dict) and "events" in document and len(document) == 1:
        documents = document["events"]
        if not isinstance(documents, list):
            raise BodyError("field 'events' must be an array")
        return check_count("events", documents)
    return [document]


@routes.post("/v1/events")
async def post_events(request: web.Request) -> web.Response:
    context = request.app[CONTEXT]
    assert context.ingestor is not None
    source = Source("http", agent=agent_from_headers(request))
    try:
        documents = _events_in(await read_body(request))
    except BodyError as error:
        refuse_body(request, error, source)
        return web.json_response({"error": str(error)}, status=error.status)
    outcome = context.ingestor.accept_documents(documents, source, ack=True)
    return await answer(outcome, context)


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    context = request.app[CONTEXT]
    return web.json_response({"ok": True, "mode": context.consent.mode})
