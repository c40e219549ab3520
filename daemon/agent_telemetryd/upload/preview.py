"""`preview`: the request bodies the next flush would send, built from the buffer; sends
nothing. The same function runs in the daemon and in the CLI with the daemon down."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from itertools import islice
from typing import Any

from agent_telemetryd.consent import ConsentState
from agent_telemetryd.outbound import OutboundBatch
from agent_telemetryd.senders.base import Sender, now_rfc3339
from agent_telemetryd.store import upload_queries
from agent_telemetryd.upload.batching import Batcher, page_rows
from agent_telemetryd.upload.flush import UploadSettings


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
    total = upload_queries.pending_count(conn) if conn is not None else 0
    if total == 0:
        return {
            **base,
            "sends": False,
            "reason": "no events are pending upload",
            "pending": 0,
            "more_requests": 0,
        }
    sent_at = now_rfc3339()
    assert conn is not None
    requests: list[dict[str, Any]] = []
    shown = 0
    for batch in islice(_next_batches(conn, settings), max(max_requests, 0)):
        requests.append(sender.prepare(batch, sent_at).as_dict())
        shown += len(batch)
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


def _next_batches(conn: sqlite3.Connection, settings: UploadSettings) -> Iterator[OutboundBatch]:
    """The batches of the next flush, in its order: the uploader's pages and `Batcher`,
    read lazily so a preview of a few requests reads a page or two, not the backlog."""
    batcher = Batcher(settings.batch_size, settings.max_batch_bytes)
    size = page_rows(settings.batch_size)
    after_id = 0
    while page := upload_queries.pending_page(conn, after_id, size):
        yield from batcher.add(page)
        after_id = page[-1].id
    yield from batcher.finish()
