"""A PostHog capture API double: `POST /batch/` checked as PostHog checks it.

gzip must decode; `api_key` must be present (401 otherwise, as PostHog answers); every
event needs `event` and `distinct_id` (400); the body must be at most 20 MB and each event
at most 1 MB (413). It can be scripted: answer a list of statuses first (500, 429 with
Retry-After, ...), refuse any batch over N events with 413, refuse any batch holding a
given uuid with 400 (its error text may quote the refused event, as some backends do),
refuse any request body over N bytes on the wire with 413 (a proxy's body limit in front
of it), hold a request open. `POST /api/projects/{id}/persons/bulk_delete/` records
erasure requests.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from tests.fakes.backend import Recorded, ThreadedBackend, events_of, read_gzip_json

MAX_BODY_BYTES = 20 * 1024 * 1024
MAX_EVENT_BYTES = 1024 * 1024


class FakePostHog(ThreadedBackend):
    def __init__(self, api_key: str = "phc_test_key") -> None:
        super().__init__()
        self.api_key = api_key
        self.max_events: int | None = None  # 413 above this many events in one batch
        self.reject_uuids: set[str] = set()  # 400 for any batch holding one of these
        self.quote_rejected = False  # the 400's error text quotes the refused event
        self.body_limit: int | None = None  # 413 from "a proxy" above this many bytes
        self.personal_api_key = "phx_personal"
        self.erasures: list[dict[str, Any]] = []

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/batch/", self._batch)
        app.router.add_post("/api/projects/{project}/persons/bulk_delete/", self._bulk_delete)

    async def _batch(self, request: web.Request) -> web.Response:
        body, size, error = await read_gzip_json(request, MAX_BODY_BYTES)
        if self.body_limit is not None and size > self.body_limit:
            # A proxy's limit: its own page, before PostHog sees the request.
            self.record(Recorded("POST", request.path, dict(request.headers), body, size, 413))
            return web.Response(status=413, text="<html>413 Request Entity Too Large</html>")
        status, answer, headers = self._judge(body, error)
        await self.pause_if_asked()
        self.record(Recorded("POST", request.path, dict(request.headers), body, size, status))
        return web.json_response(answer, status=status, headers=headers)

    def _judge(self, body: Any, error: str | None) -> tuple[int, dict[str, Any], dict[str, str]]:
        if error is not None:
            return (413 if "size" in error else 400), {"error": error}, {}
        if not isinstance(body, dict) or not body.get("api_key"):
            return 401, {"error": "API key not valid"}, {}
        if body["api_key"] != self.api_key:
            return 401, {"error": "API key not valid"}, {}
        batch = body.get("batch")
        if not isinstance(batch, list) or not batch:
            return 400, {"error": "batch must be a non-empty list"}, {}
        for event in batch:
            if not isinstance(event, dict) or not event.get("event"):
                return 400, {"error": "every event needs an event name"}, {}
            if not event.get("distinct_id"):
                return 400, {"error": "every event needs a distinct_id"}, {}
            if len(orjson.dumps(event)) > MAX_EVENT_BYTES:
                return 413, {"error": "event too large"}, {}
        scripted = self.next_scripted()
        if scripted is not None:
            return scripted.status, scripted.body, scripted.headers
        if self.max_events is not None and len(batch) > self.max_events:
            return 413, {"error": "batch too large"}, {}
        for event in batch:
            if event.get("uuid") in self.reject_uuids:
                quoted = f": {orjson.dumps(event['properties']).decode()}"
                return 400, {"error": f"invalid event{quoted if self.quote_rejected else ''}"}, {}
        return 200, {"status": "Ok"}, {}

    async def _bulk_delete(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {self.personal_api_key}":
            return web.json_response({"detail": "auth"}, status=401)
        body, size, _ = await read_gzip_json(request, MAX_BODY_BYTES)
        self.erasures.append({"project": request.match_info["project"], "body": body})
        self.record(Recorded("POST", request.path, dict(request.headers), body, size, 202))
        return web.json_response({}, status=202)

    # --- what tests read ---
    def batch_requests(self) -> list[Recorded]:
        return [r for r in self.snapshot() if r.path == "/batch/"]

    def accepted_events(self) -> list[dict[str, Any]]:
        return events_of(self.batch_requests(), "batch")

    def all_sent_events(self) -> list[dict[str, Any]]:
        """Events of every batch request, whatever the answer."""
        return [
            event
            for r in self.batch_requests()
            if isinstance(r.body, dict)
            for event in r.body.get("batch", [])
        ]
