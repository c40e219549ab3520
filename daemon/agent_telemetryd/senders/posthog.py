"""PostHog's batch capture API: `POST {host}/batch/`, gzip.

Every event carries `$process_person_profile: false` (no person profile is built) and
`$geoip_disable: true` (no location is looked up from the request IP). `"$ip": null` is
deliberately absent: PostHog only replaces the stored IP when `$ip` is non-empty, so the
team must turn on the project setting "Discard client IP data" (README).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import orjson

from agent_telemetry._wire import format_timestamp
from agent_telemetryd import __version__
from agent_telemetryd.outbound import Outbound, OutboundBatch
from agent_telemetryd.senders import transport
from agent_telemetryd.senders.base import (
    REDACTED,
    ErasureResult,
    PreparedRequest,
    RequestHook,
    Sender,
    SendResult,
    now_rfc3339,
)

LIB = "agent-telemetry"
PRIVACY_PROPERTIES: dict[str, Any] = {"$process_person_profile": False, "$geoip_disable": True}


def posthog_event(event: Outbound, distinct_id: str) -> dict[str, Any]:
    properties = orjson.loads(event.properties)
    properties.setdefault("agent", event.agent)
    properties.update(PRIVACY_PROPERTIES)
    properties["$lib"] = LIB
    properties["$lib_version"] = __version__
    return {
        "event": event.event,
        "distinct_id": distinct_id,
        "properties": properties,
        # Fixed once per event and re-sent unchanged, so PostHog dedupes a retry.
        "timestamp": format_timestamp(event.ts_ms),
        "uuid": event.uuid,
    }


def batch_body(api_key: str, batch: OutboundBatch, sent_at: str) -> dict[str, Any]:
    return {
        "api_key": api_key,
        "historical_migration": False,
        # Set at each send: PostHog corrects client clock skew with it.
        "sent_at": sent_at,
        "batch": [posthog_event(event, batch.anonymous_id) for event in batch.events],
    }


def app_host(capture_host: str) -> str:
    """The app (private API) host for a capture host: us.i.posthog.com → us.posthog.com."""
    parts = urlsplit(capture_host)
    host = parts.netloc
    if host.endswith(".i.posthog.com"):
        host = host.replace(".i.posthog.com", ".posthog.com")
    return urlunsplit((parts.scheme, host, "", "", "")).rstrip("/")


class PostHogSender(Sender):
    name = "posthog"

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        host: str,
        api_key: str,
        personal_api_key: str | None = None,
        project_id: str | None = None,
    ) -> None:
        self._session = session
        self._host = host.rstrip("/")
        self._api_key = api_key
        self._personal_api_key = personal_api_key
        self._project_id = project_id
        self.backend = f"posthog {self._host}"

    def __repr__(self) -> str:  # never the keys
        return f"PostHogSender(host={self._host!r})"

    @property
    def url(self) -> str:
        return f"{self._host}/batch/"

    async def send(self, batch: OutboundBatch, on_request: RequestHook | None = None) -> SendResult:
        body = batch_body(self._api_key, batch, now_rfc3339())
        result, _ = await transport.request(
            self._session, "POST", self.url, payload=orjson.dumps(body), on_request=on_request
        )
        return result

    def prepare(self, batch: OutboundBatch, sent_at: str) -> PreparedRequest:
        body = batch_body(REDACTED, batch, sent_at)
        headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
        return PreparedRequest("POST", self.url, headers, body)

    async def erase(self, anonymous_ids: list[str]) -> ErasureResult:
        if not (self._personal_api_key and self._project_id):
            return ErasureResult(
                requested=False,
                ok=False,
                message=(
                    "PostHog erasure needs a personal API key (posthog.personal_api_key and "
                    "posthog.project_id); without one the team must delete the remote data "
                    f"for anonymous id(s) {', '.join(anonymous_ids)} in PostHog"
                ),
            )
        url = f"{app_host(self._host)}/api/projects/{self._project_id}/persons/bulk_delete/"
        body = {"distinct_ids": anonymous_ids, "delete_events": True}
        result, _ = await transport.request(
            self._session,
            "POST",
            url,
            payload=orjson.dumps(body),
            headers={"Authorization": f"Bearer {self._personal_api_key}"},
        )
        if result.ok:
            return ErasureResult(True, True, "PostHog accepted the deletion request")
        return ErasureResult(True, False, f"PostHog refused the deletion request: {result.error}")
