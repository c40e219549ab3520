"""HTTP event ingestion: `POST /v1/events`, answered only after the commit (DESIGN §6)."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from agent_telemetryd.context import CONTEXT
from agent_telemetryd.events import EventError, parse_line
from agent_telemetryd.ingest import Outcome, Source
from agent_telemetryd.store.writer import StoreFullError

MAX_BODY_BYTES = 8 * 1024 * 1024
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
routes = web.RouteTableDef()


def agent_from_headers(request: web.Request) -> str | None:
    name = request.headers.get("X-Agent-Name")
    if not name:
        return None
    return _CONTROL.sub("", name)[:100] or None


async def read_json_body(request: web.Request) -> Any:
    body = await request.read()
    try:
        return parse_line(body)
    except EventError as error:
        raise web.HTTPBadRequest(
            text=f'{{"error": "request body is {error}"}}', content_type="application/json"
        ) from None


async def answer(outcome: Outcome, *, mode: str) -> web.Response:
    """202 after commit with per-index rejections; 400 when nothing in it was valid."""
    rejected = [{"index": r.index, "reason": r.reason} for r in outcome.rejected]
    inserted = duplicates = refused = 0
    if outcome.pending is not None:
        try:
            result = await outcome.pending
        except StoreFullError as error:
            return web.json_response(
                {"error": str(error)}, status=503, headers={"Retry-After": "5"}
            )
        inserted, duplicates, refused = result.inserted, result.duplicates, result.refused
    body: dict[str, Any] = {
        "accepted": inserted,
        "duplicates": duplicates,
        "rejected": rejected,
        "mode": mode,
    }
    if refused:
        body["refused_buffer_full"] = refused
    if rejected and not outcome.kept and not duplicates:
        return web.json_response(body, status=400)
    return web.json_response(body, status=202)


@routes.post("/v1/events")
async def post_events(request: web.Request) -> web.Response:
    context = request.app[CONTEXT]
    document = await read_json_body(request)
    if isinstance(document, dict) and "events" in document and len(document) == 1:
        documents = document["events"]
        if not isinstance(documents, list):
            return web.json_response({"error": "field 'events' must be an array"}, status=400)
    else:
        documents = [document]
    assert context.ingestor is not None
    outcome = context.ingestor.accept_documents(
        documents, Source("http", agent=agent_from_headers(request)), ack=True
    )
    return await answer(outcome, mode=context.consent.mode)


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    context = request.app[CONTEXT]
    return web.json_response({"ok": True, "mode": context.consent.mode})
