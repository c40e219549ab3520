"""The custom backend contract (served by `server/agent_telemetry_server`).

`POST {endpoint}/api/v1/telemetry/batch` with `{"anonymous_id", "events"}`, bearer key,
gzip and an `Idempotency-Key` that is the same whenever the same events are re-sent, so
a retry after a lost answer is stored once. `GET .../health`; `DELETE .../users/{id}`.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson

from agent_telemetryd.outbound import OutboundBatch
from agent_telemetryd.senders import transport
from agent_telemetryd.senders.base import (
    REDACTED,
    ErasureResult,
    PreparedRequest,
    RequestHook,
    Sender,
    SendResult,
    contract_event,
)

API = "/api/v1/telemetry"


def batch_body(batch: OutboundBatch) -> dict[str, Any]:
    return {
        "anonymous_id": batch.anonymous_id,
        "events": [contract_event(event) for event in batch.events],
    }


def _rejections(answer: Any, size: int) -> tuple[tuple[int, str], ...]:
    """The `rejected` list of a 2xx answer, kept to valid indexes."""
    if not isinstance(answer, dict) or not isinstance(answer.get("rejected"), list):
        return ()
    found = []
    for item in answer["rejected"]:
        if isinstance(item, dict) and isinstance(item.get("index"), int):
            index = item["index"]
            if 0 <= index < size:
                reason = str(item.get("reason") or "rejected by the backend")
                found.append((index, transport.backend_text(reason)))
    return tuple(found)


class HttpSender(Sender):
    name = "http"

    def __init__(self, session: aiohttp.ClientSession, *, endpoint: str, api_key: str | None):
        self._session = session
        self._endpoint = endpoint.rstrip("/")
        self._api_key = api_key
        self.backend = f"http {self._endpoint}"

    def __repr__(self) -> str:  # never the key
        return f"HttpSender(endpoint={self._endpoint!r})"

    def _headers(
        self, batch: OutboundBatch | None = None, *, redact: bool = False
    ) -> dict[str, str]:
        headers: dict[str, str] = {}
        if self._api_key:
            headers["Authorization"] = f"Bearer {REDACTED if redact else self._api_key}"
        if batch is not None:
            headers["Idempotency-Key"] = batch.batch_id
        return headers

    async def send(self, batch: OutboundBatch, on_request: RequestHook | None = None) -> SendResult:
        result, answer = await transport.request(
            self._session,
            "POST",
            f"{self._endpoint}{API}/batch",
            payload=orjson.dumps(batch_body(batch)),
            headers=self._headers(batch),
            on_request=on_request,
        )
        if result.ok:
            rejected = _rejections(answer, len(batch))
            if rejected:
                return SendResult(
                    result.status,
                    retry_after=result.retry_after,
                    body_sha256=result.body_sha256,
                    rejected=rejected,
                )
        return result

    def prepare(self, batch: OutboundBatch, sent_at: str) -> PreparedRequest:
        headers = {
            "Content-Type": "application/json",
            "Content-Encoding": "gzip",
            **self._headers(batch, redact=True),
        }
        return PreparedRequest("POST", f"{self._endpoint}{API}/batch", headers, batch_body(batch))

    async def health(self) -> SendResult:
        result, _ = await transport.request(
            self._session, "GET", f"{self._endpoint}{API}/health", headers=self._headers()
        )
        return result

    async def erase(self, anonymous_ids: list[str]) -> ErasureResult:
        failures = []
        for anonymous_id in anonymous_ids:
            result, _ = await transport.request(
                self._session,
                "DELETE",
                f"{self._endpoint}{API}/users/{anonymous_id}",
                headers=self._headers(),
            )
            if not result.ok:
                failures.append(result.error or "failed")
        if failures:
            return ErasureResult(
                True, False, f"the backend did not confirm erasure: {'; '.join(failures)}"
            )
        return ErasureResult(
            True, True, f"the backend erased the data of {len(anonymous_ids)} id(s)"
        )
