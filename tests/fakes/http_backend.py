"""A double of the custom backend contract ( server/agent_telemetry_server).

`POST /api/v1/telemetry/batch` needs the bearer key, gzip, an `Idempotency-Key` and the
`{"anonymous_id", "events": [{uuid, event, timestamp, properties, received_at, agent}]}`
envelope with no other field; events are stored once per uuid. `GET .../health` and
`DELETE .../users/{anonymous_id}` behave as the reference server's do. Events it is
told to refuse are named in the 2xx answer's `rejected` list (index and reason), as the
reference server names the events that fail its validation, and are not stored.
"""

from __future__ import annotations

import asyncio
import uuid as uuid_module
from typing import Any

import orjson
from aiohttp import web

from tests.fakes.backend import Recorded, ThreadedBackend, read_gzip_json

API = "/api/v1/telemetry"
EVENT_FIELDS = {"uuid", "event", "timestamp", "properties", "received_at", "agent"}


class FakeHttpBackend(ThreadedBackend):
    def __init__(self, api_key: str = "secret-ingest-key") -> None:
        super().__init__()
        self.api_key = api_key
        self.stored: dict[str, dict[str, Any]] = {}  # uuid → event, with its anonymous_id
        self.deleted_ids: list[str] = []
        self.idempotency_keys: list[str] = []
        # Commit each batch, then drop the connection before answering: the answer is lost.
        self.lose_answers = False
        self.reject_uuids: dict[str, str] = {}  # uuid → reason in the `rejected` list
        # Write each answer in two chunks this many seconds apart (a slow network, a
        # proxy flushing early): the client must read the whole answer.
        self.answer_in_two_chunks: float | None = None

    def routes(self, app: web.Application) -> None:
        app.router.add_post(f"{API}/batch", self._batch)
        app.router.add_get(f"{API}/health", self._health)
        app.router.add_delete(f"{API}/users/{{anonymous_id}}", self._delete)

    def _authorized(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Bearer {self.api_key}"

    async def _batch(self, request: web.Request) -> web.Response:
        body, size, error = await read_gzip_json(request, 5 * 1024 * 1024)
        status, answer = self._judge(request, body, error)
        await self.pause_if_asked()
        self.record(Recorded("POST", request.path, dict(request.headers), body, size, status))
        if self.lose_answers and request.transport is not None:
            request.transport.abort()  # committed above; the client never hears of it
        if self.answer_in_two_chunks is not None:
            return await self._answer_in_chunks(request, status, answer)
        return web.json_response(answer, status=status)

    async def _answer_in_chunks(
        self, request: web.Request, status: int, answer: Any
    ) -> web.StreamResponse:
        assert self.answer_in_two_chunks is not None
        data = orjson.dumps(answer)
        response = web.StreamResponse(status=status, headers={"Content-Type": "application/json"})
        await response.prepare(request)
        await response.write(data[: len(data) // 2])
        await asyncio.sleep(self.answer_in_two_chunks)
        await response.write(data[len(data) // 2 :])
        await response.write_eof()
        return response

    def _judge(self, request: web.Request, body: Any, error: str | None) -> tuple[int, Any]:
        if not self._authorized(request):
            return 401, {"error": "missing or wrong bearer key"}
        if error is not None:
            return 400, {"error": error}
        key = request.headers.get("Idempotency-Key")
        if not key:
            return 400, {"error": "Idempotency-Key missing"}
        if not isinstance(body, dict) or set(body) != {"anonymous_id", "events"}:
            return 400, {"error": "body must be {anonymous_id, events}"}
        uuid_module.UUID(body["anonymous_id"])
        scripted = self.next_scripted()
        if scripted is not None:
            return scripted.status, scripted.body
        accepted = duplicates = 0
        rejected = []
        for event in body["events"]:
            if set(event) != EVENT_FIELDS:
                return 400, {"error": f"event fields must be {sorted(EVENT_FIELDS)}"}
        for index, event in enumerate(body["events"]):
            if event["uuid"] in self.reject_uuids:
                rejected.append({"index": index, "reason": self.reject_uuids[event["uuid"]]})
            elif event["uuid"] in self.stored:
                duplicates += 1
            else:
                accepted += 1
                self.stored[event["uuid"]] = {**event, "anonymous_id": body["anonymous_id"]}
        self.idempotency_keys.append(key)
        return 200, {"accepted": accepted, "duplicates": duplicates, "rejected": rejected}

    async def _health(self, request: web.Request) -> web.Response:
        self.record(Recorded("GET", request.path, dict(request.headers), None, 0, 200))
        return web.json_response({"status": "ok"})

    async def _delete(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return web.json_response({"error": "missing or wrong bearer key"}, status=401)
        anonymous_id = request.match_info["anonymous_id"]
        self.deleted_ids.append(anonymous_id)
        doomed = [u for u, e in self.stored.items() if e["anonymous_id"] == anonymous_id]
        for event_uuid in doomed:
            del self.stored[event_uuid]
        self.record(Recorded("DELETE", request.path, dict(request.headers), None, 0, 200))
        return web.json_response({"anonymous_id": anonymous_id, "events_deleted": len(doomed)})
