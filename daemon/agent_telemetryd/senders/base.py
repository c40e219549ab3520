"""The one small interface every sender implements, and what it returns."""

from __future__ import annotations

import abc
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from agent_telemetry._wire import format_timestamp
from agent_telemetryd.outbound import Outbound, OutboundBatch

REDACTED = "<redacted>"

# Called with the body's sha256 as a request leaves, so a request cancelled before its
# answer still gets a receipt: the backend may have received it. What it raises ends the
# send there, before anything is written to the network (upload turned off meanwhile).
RequestHook = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class SendResult:
    """The backend's answer to one request. `error` is a short reason, never our body; it
    may quote the backend's own error text (scrubbed), so it goes to receipts and to the
    user, never to the log (`kind` does)."""

    status: int | None  # HTTP status; None when no answer came
    error: str | None = None
    retry_after: float | None = None
    body_sha256: str = ""
    # Events a 2xx answer still refused, by index in the batch (the custom contract's
    # `rejected` list): quarantined with the backend's reason instead of marked sent.
    rejected: tuple[tuple[int, str], ...] = ()
    # Where a redirect points, without credentials, query or fragment.
    location: str | None = None
    # False when the answer was longer than the transport reads: what it said is unknown.
    answer_read: bool = True

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def kind(self) -> str:
        """What happened in our own fixed words (`HTTP 503`, `timed out`, `network error
        (ClientConnectorError)`), without anything the backend wrote: safe for the log."""
        if self.status is not None:
            return f"HTTP {self.status}"
        return self.error or "no answer"


@dataclass(frozen=True, slots=True)
class ErasureResult:
    requested: bool  # an erasure request was sent
    ok: bool
    message: str


@dataclass(frozen=True, slots=True)
class PreparedRequest:
    """What `preview` shows: the request a send would make, secrets redacted."""

    method: str
    url: str
    headers: dict[str, str]
    body: Any

    def as_dict(self) -> dict[str, Any]:
        return {"method": self.method, "url": self.url, "headers": self.headers, "body": self.body}


class Sender(abc.ABC):
    name: str = ""
    sends = True  # False for `none`: the uploader then leaves events pending
    backend = ""  # where events go, for receipts and `status` (no secrets)

    @abc.abstractmethod
    async def send(self, batch: OutboundBatch, on_request: RequestHook | None = None) -> SendResult:
        """Deliver one batch; never raises for backend or network trouble. `on_request` is
        called as the request leaves (not at all if it never does)."""

    @abc.abstractmethod
    def prepare(self, batch: OutboundBatch, sent_at: str) -> PreparedRequest:
        """The request `send` would make now, with secrets redacted (for `preview`)."""

    async def erase(self, anonymous_ids: list[str]) -> ErasureResult:
        """Ask the backend to delete what it holds for these ids."""
        return ErasureResult(
            requested=False,
            ok=False,
            message=(
                f"sender {self.name} cannot ask for erasure; events under anonymous id(s) "
                f"{', '.join(anonymous_ids)} were uploaded before — run forget again with that "
                "backend configured, or ask the team that receives them to delete them"
            ),
        )

    async def health(self) -> SendResult:
        return SendResult(status=None, error=f"sender {self.name} has no health check")

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release what the sender holds (files); the HTTP session belongs to the part."""


def now_rfc3339() -> str:
    """`sent_at`: set at each send, so the backend can correct for this clock's skew."""
    return format_timestamp(time.time_ns() // 1_000_000)


def contract_event(event: Outbound) -> dict[str, Any]:
    """One event in the custom contract's shape (also what the file sender writes)."""
    return {
        "uuid": event.uuid,
        "event": event.event,
        "timestamp": format_timestamp(event.ts_ms),
        "properties": orjson.loads(event.properties),
        "received_at": format_timestamp(event.received_ms),
        "agent": event.agent,
    }
