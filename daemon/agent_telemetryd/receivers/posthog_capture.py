"""PostHog-compatible capture routes: an unmodified PostHog SDK pointed at the daemon as
its host lands in the same buffer (DESIGN §6).

The SDK's `distinct_id` and `api_key` are not kept: the daemon stands for one anonymous
installation, and a distinct id is often a real person's e-mail or account id. Source is
the SDK's `$lib` unless `X-Agent-Name` says otherwise.
"""

from __future__ import annotations

import base64
import binascii
import zlib
from typing import Any
from urllib.parse import parse_qs

from aiohttp import web

from agent_telemetryd.context import CONTEXT
from agent_telemetryd.events import EventError, parse_line
from agent_telemetryd.ingest import Source
from agent_telemetryd.receivers.http_ingest import (
    MAX_BODY_BYTES,
    BodyError,
    agent_from_headers,
    answer,
    read_body,
    refuse_body,
    too_large,
)

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


def inflate_gzip(compressed: bytes, limit: int = MAX_BODY_BYTES) -> bytes:
    """Undo gzip, refusing (413) a body that inflates past `limit` before it is inflated:
    half a MiB of gzip can hold a GiB, and gzip.decompress would hold all of it."""
    inflated = bytearray()
    rest = compressed
    while rest:  # gzip allows several members one after another, as gzip.decompress does
        inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)  # expect the gzip header
        try:
            # One byte over the limit is enough to know; zlib stops there, whatever is left.
            inflated += inflater.decompress(rest, limit + 1 - len(inflated))
        except zlib.error as error:
            raise BodyError(f"request body is not valid gzip ({error})") from None
        if len(inflated) > limit:
            raise too_large("request body inflates to")
        if not inflater.eof:
            raise BodyError("request body is not valid gzip (it ends early)")
        rest = inflater.unused_data
    return bytes(inflated)


def _decode_body(raw: bytes, content_type: str, query: dict[str, list[str]]) -> Any:
    if raw[:2] == b"\x1f\x8b":  # gzip, whatever the headers claim (posthog-js gzip-js)
        raw = inflate_gzip(raw)
    if content_type == "application/x-www-form-urlencoded" or raw.startswith(b"data="):
        form = parse_qs(raw.decode("latin-1"))
        data = (form.get("data") or [""])[0]
        try:
            raw = base64.b64decode(data + "=" * (-len(data) % 4))
        except (binascii.Error, ValueError):
            raw = data.encode()
        if (query.get("compression") or [""])[0] == "gzip-js" or raw[:2] == b"\x1f\x8b":
            raw = inflate_gzip(raw)
    try:
        return parse_line(raw)
    except EventError as error:
        raise BodyError(f"request body is {error}") from None


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
    assert context.ingestor is not None
    source = Source("posthog", agent=agent_from_headers(request))
    try:
        items = _items_in(
            _decode_body(
                await read_body(request), request.content_type, parse_qs(request.query_string)
            )
        )
    except BodyError as error:
        refuse_body(request, error, source)
        return web.json_response(
            {"type": "validation_error", "detail": str(error)}, status=error.status
        )
    documents = [to_wire_event(item) for item in items]
    outcome = context.ingestor.accept_documents(documents, source, ack=True)
    response = await answer(outcome, context)
    if response.status == 202:
        # PostHog's SDKs treat exactly this as success.
        return web.json_response({"status": 1})
    return response


def _items_in(document: Any) -> list[Any]:
    if isinstance(document, dict) and "batch" in document:
        items = document["batch"]
    elif isinstance(document, list):
        items = document
    else:
        items = [document]
    if not isinstance(items, list):
        raise BodyError("'batch' must be an array")
    return items
