"""End to end with the daemon's own `http` sender as the client of the real server.

The sender is the code the daemon's uploader calls on `flush`; driving it directly keeps
this test independent of the daemon's scheduling while exercising the exact wire format.
"""

from __future__ import annotations

import time
import uuid

import aiohttp
import asyncpg
import orjson
from server_helpers import CLIENT_ADDRESS, INGEST_KEYS, Running

from agent_telemetryd.senders import http as http_sender
from agent_telemetryd.upload import batching


def _outbound(index: int, anonymous_id: str, **changes: object) -> object:
    now_ms = int(time.time() * 1000) - 60_000
    fields: dict[str, object] = {
        "id": index,
        "uuid": str(uuid.uuid4()),
        "event": "agent.run.completed",
        "ts_ms": now_ms + index,
        "received_ms": now_ms + index + 5,
        "properties": orjson.dumps({"duration_ms": 100 * (index + 1)}).decode(),
        "agent": "planner",
        "anonymous_id": anonymous_id,
    }
    fields.update(changes)
    return batching.Outbound(**fields)


async def test_daemon_sender_batches_are_stored_once_and_erased(
    server: Running, db: asyncpg.Connection
) -> None:
    anonymous_id = str(uuid.uuid4())
    rows = [_outbound(i, anonymous_id) for i in range(5)]
    rows.append(_outbound(5, anonymous_id, agent="", event="tool.call.failed", properties="{}"))
    batch = batching.OutboundBatch(anonymous_id, tuple(rows))
    connector = aiohttp.TCPConnector(local_addr=(CLIENT_ADDRESS, 0))
    async with aiohttp.ClientSession(connector=connector) as session:
        sender = http_sender.HttpSender(session, endpoint=server.url, api_key=INGEST_KEYS[1])
        assert (await sender.health()).ok
        first = await sender.send(batch)
        assert first.ok and first.rejected == ()
        assert await db.fetchval("SELECT count(*) FROM events") == 6
        # A retry after a lost answer: same Idempotency-Key, nothing new stored.
        again = await sender.send(batch)
        assert again.ok
        assert await db.fetchval("SELECT count(*) FROM events") == 6
        assert await db.fetchval("SELECT count(DISTINCT uuid) FROM events") == 6
        _, stats = await server.get("/api/v1/telemetry/stats")
        assert (stats["events"], stats["unique_anonymous_ids"]) == (6, 1)
        _, errors = await server.get("/api/v1/analytics/errors")
        assert {(e["agent"], e["event"], e["errors"]) for e in errors["errors"]} == {
            ("planner", "agent.run.completed", 0),
            (None, "tool.call.failed", 1),
        }

        erased = await sender.erase([anonymous_id])
        assert erased.ok, erased.message
    assert await db.fetchval("SELECT count(*) FROM events") == 0
    assert await db.fetchval("SELECT count(*) FROM rollup_daily") == 0


async def test_daemon_sender_sees_401_for_a_wrong_key(
    server: Running, db: asyncpg.Connection
) -> None:
    anonymous_id = str(uuid.uuid4())
    batch = batching.OutboundBatch(anonymous_id, (_outbound(0, anonymous_id),))
    async with aiohttp.ClientSession() as session:
        sender = http_sender.HttpSender(session, endpoint=server.url, api_key="wrong")
        result = await sender.send(batch)
    assert result.status == 401
    assert await db.fetchval("SELECT count(*) FROM events") == 0
