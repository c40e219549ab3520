"""The `none` sender: nothing ever leaves the machine; events stay pending."""

from __future__ import annotations

from agent_telemetryd.outbound import OutboundBatch
from agent_telemetryd.senders.base import PreparedRequest, RequestHook, Sender, SendResult


class NoneSender(Sender):
    name = "none"
    sends = False
    backend = "none"

    async def send(self, batch: OutboundBatch, on_request: RequestHook | None = None) -> SendResult:
        return SendResult(None, error="sender none sends nothing")

    def prepare(self, batch: OutboundBatch, sent_at: str) -> PreparedRequest:
        return PreparedRequest("NONE", "", {}, None)
