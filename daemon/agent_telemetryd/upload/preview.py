"""`preview`: the request bodies the next flush would send, built from the buffer; sends
nothing. The same function runs in the daemon and in the CLI with the daemon down."""

from __future__ import annotations

import sqlite3
from typing import Any

from agent_telemetryd.consent import ConsentState
from agent_telemetryd.senders.base import Sender, now_rfc3339
from agent_telemetryd.upload import pending
from agent_telemetryd.upload.batching import make_batches
from agent_telemetryd.upload.uploader import UploadSettings


def build_preview(
    conn: sqlite3.Connection | None,
    *,
    consent: ConsentState,
    sender: Sender,
    settings: UploadSettings,
    max_requests: int,
) -> dict[str, Any]:
    """{"sends", "reason", "sender", "pending", "requests": [...], "more_requests"}."""
    base: dict[str, Any] = {"sender": sender.name, "backend": sender.backend, "requests": []}
    if not consent.uploads:
        reason = f"mode is {consent.mode} ({consent.reason}): the next flush sends nothing"
        return {**base, "sends": False, "reason": reason, "pending": 0, "more_requests": 0}
    if not sender.sends:
        reason = "sender is none: the next flush sends nothing"
        return {**base, "sends": False, "reason": reason, "pending": 0, "more_requests": 0}
    total = pending.pending_count(conn) if conn is not None else 0
    if total == 0:
        return {
            **base,
            "sends": False,
            "reason": "no events are pending upload",
            "pending": 0,
            "more_requests": 0,
        }
    sent_at = now_rfc3339()
    requests: list[dict[str, Any]] = []
    shown = 0
    after_id = 0
    assert conn is not None
    while len(requests) < max_requests:
        page = pending.pending_page(conn, after_id, settings.batch_size)
        if not page:
            break
        for batch in make_batches(page, settings.batch_size, settings.max_batch_bytes):
            if len(requests) >= max_requests:
                break
            requests.append(sender.prepare(batch, sent_at).as_dict())
            shown += len(batch)
        after_id = page[-1].id
    remaining = total - shown
    return {
        **base,
        "sends": True,
        "reason": None,
        "pending": total,
        "requests": requests,
        "shown_events": shown,
        # An estimate: the rest in full batches (the byte budget may cut some smaller).
        "more_requests": -(-remaining // settings.batch_size) if remaining > 0 else 0,
        "note": "sent_at is set at each send; secrets are shown as <redacted>",
    }
