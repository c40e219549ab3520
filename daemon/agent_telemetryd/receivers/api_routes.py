"""The control API on api.sock: status, export, clear, mode. Used by the CLI."""

from __future__ import annotations

import contextlib
import os
from typing import Any

import orjson
from aiohttp import web

from agent_telemetryd.config import MODES
from agent_telemetryd.consent_env import consent_environment
from agent_telemetryd.context import DaemonContext
from agent_telemetryd.export import FORMATS, Renderer
from agent_telemetryd.lock import AlreadyRunningError
from agent_telemetryd.mode_change import apply_mode, record_choice
from agent_telemetryd.receivers.http_guard import late_answer
from agent_telemetryd.status import build_status, read_facts
from agent_telemetryd.store import queries
from agent_telemetryd.web_context import CONTEXT

routes = web.RouteTableDef()
_MODE_BODY = 'body must be {"mode": "' + "|".join(MODES) + '"}'


async def current_status(context: DaemonContext) -> dict[str, Any]:
    facts = await context.buffer.read(read_facts) if context.buffer else read_facts(None)
    extra: dict[str, Any] = {}
    for section in context.status_sections:
        extra.update(await section())
    return build_status(
        config=context.config,
        consent=context.consent,
        running=True,
        pid=os.getpid(),
        facts=facts,
        memory_counters=_memory_counters(context),
        http_url=context.http_url,
        extra=extra,
    )


def _memory_counters(context: DaemonContext) -> dict[str, int]:
    counts = dict(context.ingestor.memory.values) if context.ingestor else {}
    if context.buffer is not None:
        for name, value in context.buffer.writer.unsaved.items():
            counts[name] = counts.get(name, 0) + value
    return counts


@routes.get("/v1/status")
async def get_status(request: web.Request) -> web.Response:
    return web.json_response(await current_status(request.app[CONTEXT]), dumps=_dumps)


@routes.get("/v1/export")
async def get_export(request: web.Request) -> web.StreamResponse:
    context = request.app[CONTEXT]
    try:
        renderer = Renderer(request.query.get("format", "ndjson"))
    except ValueError as error:
        return web.json_response({"error": str(error)}, status=400)
    response = web.StreamResponse(headers={"Content-Type": FORMATS[renderer.fmt]})
    await response.prepare(request)
    await response.write(renderer.begin())
    last_id = 0
    while context.buffer is not None:
        # A page at a time on the reader thread: memory does not grow with the buffer.
        page = await context.buffer.read(
            lambda conn, after=last_id: list(queries.iter_export_page(conn, after, 2000))
        )
        if not page:
            break
        await response.write(b"".join(renderer.row(row) for _, row in page))
        last_id = page[-1][0]
    await response.write(renderer.end())
    await response.write_eof()
    return response


@routes.post("/v1/clear")
async def post_clear(request: web.Request) -> web.Response:
    context = request.app[CONTEXT]
    async with contextlib.AsyncExitStack() as guards:
        for guard in context.clear_guards:
            await guards.enter_async_context(guard())
        # The guards may have waited for an upload to finish: the command may have given
        # up meanwhile, and told the user nothing was deleted.
        late = late_answer(request)
        if late is not None:
            return late
        deleted = await context.buffer.clear() if context.buffer is not None else 0
    if context.ingestor is not None:
        context.ingestor.memory.values.clear()
    return web.json_response({"deleted": deleted})


@routes.post("/v1/mode")
async def post_mode(request: web.Request) -> web.Response:
    context = request.app[CONTEXT]
    try:
        body = await request.json(loads=orjson.loads)
        mode = body["mode"]
    except (ValueError, KeyError, TypeError):
        return web.json_response({"error": _MODE_BODY}, status=400)
    if mode not in MODES:
        return web.json_response({"error": f"unknown mode {mode!r}"}, status=400)
    chosen, set_aside = record_choice(context.config, mode, via=str(body.get("via", "cli")))
    try:
        state = await apply_mode(context, chosen)
    except AlreadyRunningError as error:
        return web.json_response({"error": f"cannot keep events: {error}"}, status=409)
    return web.json_response(
        {
            "mode": state.mode,
            "mode_source": state.source,
            "mode_reason": state.reason,
            "sender": context.config.sender,
            "consent_environment": consent_environment(context.config),
            "unreadable_record_kept_as": str(set_aside) if set_aside else None,
        }
    )


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()
