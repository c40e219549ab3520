"""api.sock routes for uploading and privacy: flush, preview, quarantine, reset-id, forget."""

from __future__ import annotations

import contextlib
from typing import Any

import orjson
from aiohttp import web

from agent_telemetryd.lazy_log import get_logger
from agent_telemetryd.senders.factory import SharedSession, eraser_for
from agent_telemetryd.store import upload_queries
from agent_telemetryd.upload import erasure, receipts
from agent_telemetryd.upload.preview import build_preview
from agent_telemetryd.upload.uploader import Uploader
from agent_telemetryd.web_context import CONTEXT

log = get_logger("agent_telemetryd.upload")
UPLOADER = web.AppKey("uploader", Uploader)
routes = web.RouteTableDef()
DEFAULT_PREVIEW_REQUESTS = 10


def _json(value: Any, status: int = 200) -> web.Response:
    return web.json_response(value, status=status, dumps=lambda v: orjson.dumps(v).decode())


@routes.post("/v1/flush")
async def post_flush(request: web.Request) -> web.Response:
    report = await request.app[UPLOADER].flush("command")
    return _json(report.as_dict())


@routes.get("/v1/preview")
async def get_preview(request: web.Request) -> web.Response:
    context = request.app[CONTEXT]
    uploader = request.app[UPLOADER]
    try:
        max_requests = int(request.query.get("max_requests", DEFAULT_PREVIEW_REQUESTS))
    except ValueError:
        return _json({"error": "max_requests must be a whole number"}, 400)
    consent, sender, settings = context.consent, uploader.sender, uploader.settings

    def build(conn: Any) -> dict[str, Any]:
        return build_preview(
            conn, consent=consent, sender=sender, settings=settings, max_requests=max_requests
        )

    if context.buffer is None:
        return _json(build(None))
    return _json(await context.buffer.read(build))


@routes.get("/v1/quarantine")
async def get_quarantine(request: web.Request) -> web.Response:
    buffer = request.app[CONTEXT].buffer
    if buffer is None:
        return _json({"total": 0, "events": []})
    return _json(await buffer.read(upload_queries.quarantined))


@routes.get("/v1/receipts")
async def get_receipts(request: web.Request) -> web.Response:
    buffer = request.app[CONTEXT].buffer
    if buffer is None:
        return _json({"receipts": []})
    return _json({"receipts": await buffer.read(receipts.recent)})


@routes.post("/v1/reset-id")
async def post_reset_id(request: web.Request) -> web.Response:
    buffer = request.app[CONTEXT].buffer
    if buffer is None:
        return _json({"error": "mode is off: there is no anonymous id to reset"}, 409)
    # Events already kept stay under the id they were received with: they are sent in
    # batches of their own, never linked to the new id.
    return _json({"anonymous_id": await buffer.reset_anonymous_id()})


@routes.post("/v1/forget")
async def post_forget(request: web.Request) -> web.Response:
    context = request.app[CONTEXT]
    uploader = request.app[UPLOADER]
    # No request may leave after forget but the erasure: no flush runs until it is done.
    # The clear guards are held too, as for `clear`: whatever reads the buffer is told.
    async with uploader.paused("forget was requested"), contextlib.AsyncExitStack() as guards:
        for guard in context.clear_guards:
            await guards.enter_async_context(guard())
        buffer = context.buffer
        sent: list[erasure.SentTo] = []
        deleted = 0
        new_id = None
        if buffer is not None:
            sent = await buffer.read(erasure.sent_to)
            deleted = await buffer.clear()
            new_id = await buffer.reset_anonymous_id()
        if context.ingestor is not None:
            context.ingestor.memory.values.clear()
        # Backends other than the configured one get a session of their own, closed here.
        session = SharedSession()
        try:
            outcome, erased = await erasure.request_erasure(
                uploader.sender,
                sent,
                lambda backend: eraser_for(backend, context.config, session),
            )
        finally:
            await session.close()
        if erased and buffer is not None:
            await buffer.writer.run(lambda conn: erasure.mark_erased(conn, erased))
        ids = list(dict.fromkeys(item.anonymous_id for item in sent))
    log.info(
        "forget_done",
        events_deleted=deleted,
        erasure_requested=outcome["requested"],
        erasure_ok=outcome["ok"],
    )
    return _json(
        {"deleted": deleted, "anonymous_id": new_id, "erased_ids": ids, "erasure": outcome}
    )
