"""`preview`: the request bodies the next flush would send, built from the buffer; sends
nothing. The same function runs in the daemon and in the CLI with the daemon down."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from itertools import islice
from typing import Any

from agent_telemetryd.consent import ConsentState
from agent_telemetryd.outbound import OutboundBatch
from agent_telemetryd.ratelimit import waiting_report
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
    now_ms: int | None = None,
) -> dict[str, Any]:
    """{"sends", "reason", "sender", "pending", "waiting", "requests": [...], "more_requests"}.

    `pending` counts every pending event; `waiting` says how many of them the rate limit
    holds back (the next flush leaves those for a later one) and why."""
    now_ms = now_ms if now_ms is not None else time.time_ns() // 1_000_000
    base: dict[str, Any] = {"sender": sender.name, "backend": sender.backend, "requests": []}
    nothing = {"sends": False, "pending": 0, "more_requests": 0}
    if not consent.uploads:
        reason = f"mode is {consent.mode} ({consent.reason}): the next flush sends nothing"
        return {**base, **nothing, "reason": reason}
    if not sender.sends:
        reason = "sender is none: the next flush sends nothing"
        return {**base, **nothing, "reason": reason}
    if settings.held is not None:
        return {**base, **nothing, "reason": settings.held}
    total = upload_queries.pending_count(conn) if conn is not None else 0
    found = upload_queries.waiting(conn, now_ms) if conn is not None and total else {}
    waiting = waiting_report(found, settings.rate_limit, settings.rate_limit_backlog)
    base["waiting"] = waiting
    if total == 0:
        return {**base, **nothing, "reason": "no events are pending upload"}
    sent_at = now_rfc3339()
    assert conn is not None
    requests: list[dict[str, Any]] = []
    shown = 0
    for batch in islice(_next_batches(conn, settings, now_ms), max(max_requests, 0)):
        requests.append(sender.prepare(batch, sent_at).as_dict())
        shown += len(batch)
    if not requests:
        return {**base, **nothing, "pending": total, "reason": waiting["why"]}
    remaining = total - waiting["events"] - shown
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


def _next_batches(
    conn: sqlite3.Connection, settings: UploadSettings, now_ms: int
) -> Iterator[OutboundBatch]:
    """The batches of the next flush, in its order: the uploader's pages and `Batcher`,
    read lazily so a preview of a few requests reads a page or two, not the backlog."""
    batcher = Batcher(settings.batch_size, settings.max_batch_bytes)
    size = page_rows(settings.batch_size)
    after_id = 0
    while page := upload_queries.pending_page(conn, after_id, size, now_ms):
        yield from batcher.add(page)
        after_id = page[-1].id
    yield from batcher.finish()
