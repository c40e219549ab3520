"""JSON responses and the request guards every route shares (keys, limits)."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import orjson
from aiohttp import web

from agent_telemetry_server.auth import bearer_token, match_key
from agent_telemetry_server.ratelimit import RateLimiter
from agent_telemetry_server.state import METRICS


class ApiError(Exception):
    """Raised by a handler; the error middleware answers `{"error": message, ...}`."""

    def __init__(
        self,
        status: int,
        message: str,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}
        self.extra = extra

    def response(self) -> web.Response:
        return json_response({"error": self.message, **self.extra}, self.status, self.headers)


# Answers hold the team's figures, read with a key: no cache (a browser's on a shared
# computer, a proxy's) keeps them, and no browser reads them as anything but JSON.
_API_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


def json_response(
    body: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=orjson.dumps(body),
        status=status,
        content_type="application/json",
        headers={**_API_HEADERS, **(headers or {})},
    )


def require_key(request: web.Request, keys: tuple[str, ...]) -> int:
    """Index of the presented bearer key among `keys`, else raise 401."""
    index = match_key(bearer_token(request.headers.get("Authorization")), keys)
    if index is None:
        raise ApiError(401, "missing or wrong bearer key", {"WWW-Authenticate": "Bearer"})
    return index


def enforce_rate(request: web.Request, limiter: RateLimiter, key: Hashable, scope: str) -> None:
    """Raise 429 with Retry-After when `key` has used up its share."""
    wait = limiter.take(key)
    if wait:
        request.app[METRICS].rate_limited.labels(scope.replace(" ", "_")).inc()
        raise ApiError(429, f"rate limit for this {scope} exceeded", {"Retry-After": str(wait)})
