"""PostHog-compatible capture routes: an unmodified PostHog SDK pointed at the daemon as
its host lands in the same buffer (DESIGN §6).

The SDK's `distinct_id` and `api_key` are not kept: the daemon stands for one anonymous
installation, and a distinct id is often a real person's e-mail or account id. Source is
the SDK's `$lib` unless `X-Agent-Name` says otherwise.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import zlib
from typing import Any
from urllib.parse import parse_qs

from aiohttp import web

from agent_telemetryd.context import CONTEXT
from agent_telemetryd.events import EventError, parse_line
from agent_telemetryd.ingest import Source
from agent_telemetryd.receivers.http_ingest import agent_from_headers, answer

routes = web.RouteTableDef()
# What PostHog's own capture puts on an event and the daemon does not keep.
_DROPPED_KEYS = ("distinct_id", "$ip", "$set", "$set_once", "token")


def to_wire_event(item: Any) -> Any:
    """One PostHog capture item → the daemon's wire event (left alone if not an object)."""
    if not isinstance(item, dict):
        return item
    properties = item.get("properties")
    properties = dict(properties) if isinstance(properties, dict) else properties
    if isinstance(properties, dict):
        for key in _DROPPED_KEYS:
            properties.pop(key, None)
    event: dict[str, Any] = {"event": item.get("event"), "properties": properties}
    for key in ("timestamp", "uuid"):
        if item.get(key) is not None:
            event[key] = item[key]
    lib = properties.get("$lib") if isinstance(properties, dict) else None
    if isinstance(lib, str) and lib:
        event["agent"] = lib[:100]
    return event


def _decode_body(raw: bytes, content_type: str, query: dict[str, list[str]]) -> Any:
    if raw[:2] == b"\x1f\x8b":  # gzip, whatever the headers claim (posthog-js gzip-js)
        raw = gzip.decompress(raw)
    if content_type == "application/x-www-form-urlencoded" or raw.startswith(b"data="):
        form = parse_qs(raw.decode("latin-1"))
        data = (form.get("data") or [""])[0]
        try:
            raw = base64.b64decode(data + "=" * (-len(data) % 4))
        except (binascii.Error, ValueError):
            raw = data.encode()
        if (query.get("compression") or [""])[0] == "gzip-js" or raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    return parse_line(raw)


@routes.post("/batch/")
@routes.post("/batch")
@routes.post("/capture/")
@routes.post("/capture")
@routes.post("/e/")
@routes.post("/e")
@routes.post("/i/v0/e/")
@routes.post("/i/v0/e")
async def capture(request: web.Request) -> web.Response:
    context = request.app[CONTEXT]
    try:
        document = _decode_body(
            await request.read(), request.content_type, parse_qs(request.query_string)
        )
    except (EventError, OSError, EOFError, zlib.error, UnicodeDecodeError) as error:
        return web.json_response({"type": "validation_error", "detail": str(error)}, status=400)
    if isinstance(document, dict) and "batch" in document:
        items = document["batch"]
    elif isinstance(document, list):
        items = document
    else:
        items = [document]
    if not isinstance(items, list):
        return web.json_response(
            {"type": "validation_error", "detail": "'batch' must be an array"}, status=400
        )
    assert context.ingestor is not None
    source = Source("posthog", agent=agent_from_headers(request))
    outcome = context.ingestor.accept_documents(
        [to_wire_event(item) for item in items], source, ack=True
    )
    response = await answer(outcome, mode=context.consent.mode)
    if response.status == 202:
        # PostHog's SDKs treat exactly this as success.
        return web.json_response({"status": 1})
    return response
