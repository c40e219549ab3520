"""Write routes: POST a batch, DELETE one anonymous id. Both need an ingest key."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import structlog
from aiohttp import web

from agent_telemetry_server import jsonbody
from agent_telemetry_server.body import read_body
from agent_telemetry_server.db import connection
from agent_telemetry_server.ingest import IdempotencyConflict, erase, write_batch
from agent_telemetry_server.responses import ApiError, enforce_rate, json_response, require_key
from agent_telemetry_server.state import ANONYMOUS_ID_LIMITER, KEY_LIMITER, METRICS, POOL, SETTINGS
from agent_telemetry_server.validation import (
    BodyError,
    EventTooLarge,
    parse_envelope,
    parse_events,
    valid_idempotency_key,
)

log = structlog.get_logger("agent_telemetry_server.ingest")

routes = web.RouteTableDef()


def _check_content_type(request: web.Request) -> None:
    if request.content_type not in ("application/json", "application/octet-stream"):
        raise ApiError(415, "Content-Type must be application/json")


@routes.post("/api/v1/telemetry/batch")
async def post_batch(request: web.Request) -> web.Response:
    app = request.app
    settings = app[SETTINGS]
    # Key first: an unauthenticated request gets nothing read, parsed or stored.
    key_index = require_key(request, settings.api_keys)
    enforce_rate(request, app[KEY_LIMITER], key_index, "key")
    _check_content_type(request)
    idempotency_key = request.headers.get("Idempotency-Key")
    if idempotency_key is not None and not valid_idempotency_key(idempotency_key):
        raise ApiError(400, "Idempotency-Key must be 1 to 200 printable ASCII characters")
    raw = await read_body(request, settings.max_body_bytes)
    try:
        body = jsonbody.loads(raw)
    except ValueError:
        raise ApiError(400, "body is not valid JSON") from None
    try:
        anonymous_id, events = parse_envelope(body, settings.max_events_per_batch)
    except BodyError as exc:
        raise ApiError(400, str(exc)) from None
    except EventTooLarge:
        raise ApiError(
            413, f"batch is over the limit of {settings.max_events_per_batch} events"
        ) from None
    enforce_rate(request, app[ANONYMOUS_ID_LIMITER], anonymous_id, "anonymous id")
    try:
        batch = parse_events(
            anonymous_id,
            events,
            datetime.now(UTC),
            settings.max_event_bytes,
            settings.retention_days,
        )
    except EventTooLarge as exc:
        raise ApiError(413, str(exc), index=exc.index) from None
    async with connection(app[POOL], settings.pool_acquire_timeout) as conn:
        try:
            result = await write_batch(conn, batch, idempotency_key)
        except IdempotencyConflict as exc:
            raise ApiError(422, str(exc)) from None
    metrics = app[METRICS]
    metrics.batches.labels("replayed" if result.replayed else "stored").inc()
    if not result.replayed:
        for outcome in ("accepted", "duplicates"):
            metrics.events.labels(outcome).inc(result.body[outcome])
        metrics.events.labels("rejected").inc(len(batch.rejected))
    log.info(
        "batch stored",
        events=batch.total,
        accepted=result.body["accepted"],
        duplicates=result.body["duplicates"],
        rejected=len(result.body["rejected"]),
        replayed=result.replayed,
    )
    headers = {"Idempotent-Replayed": "true"} if result.replayed else None
    return json_response(result.body, headers=headers)


@routes.delete("/api/v1/telemetry/users/{anonymous_id}")
async def delete_user(request: web.Request) -> web.Response:
    app = request.app
    settings = app[SETTINGS]
    key_index = require_key(request, settings.api_keys)
    enforce_rate(request, app[KEY_LIMITER], key_index, "key")
    try:
        anonymous_id = uuid.UUID(request.match_info["anonymous_id"])
    except ValueError:
        raise ApiError(400, "anonymous_id: not a valid UUID") from None
    async with connection(app[POOL], settings.pool_acquire_timeout) as conn:
        erased = await erase(conn, anonymous_id)
    # Counts only: the id itself stays out of the logs.
    log.info(
        "anonymous id erased",
        events_deleted=erased.events_deleted,
        rollup_rows_deleted=erased.rollup_rows_deleted,
    )
    return json_response(
        {
            "anonymous_id": str(anonymous_id),
            "events_deleted": erased.events_deleted,
            "rollup_rows_deleted": erased.rollup_rows_deleted,
            "idempotency_keys_deleted": erased.idempotency_keys_deleted,
        }
    )
