"""The events table's vocabulary: one row as it is inserted, and the upload states.

Everything that writes or reads `events.upload` names a state through `UploadState`, and
the insert statement is generated from `EventRow`, so a column added to one cannot be
forgotten in the other.
"""

from __future__ import annotations

from enum import StrEnum
from typing import NamedTuple


class UploadState(StrEnum):
    """Where an event stands with the backend (the `events.upload` column)."""

    LOCAL = "local"  # received while uploads were off, or made local when they were turned off
    PENDING = "pending"  # the next flush sends it (once `eligible_ms`, if set, has come)
    SENT = "sent"  # a backend answered 2xx for it
    RATE_LIMITED = "rate_limited"  # its source was over the backlog cap: kept local for good
    QUARANTINED = "quarantined"  # the backend refused it; `quarantine` lists why


class EventRow(NamedTuple):
    """One row of `events` as ingest builds it and the writer inserts it (`id` is SQLite's)."""

    uuid: str
    event: str
    ts_ms: int  # the client's timestamp, or the receipt time when it gave none
    received_ms: int
    properties: str  # JSON text
    agent: str
    pid: int | None
    transport: str  # unix, http, posthog, otlp, spool
    consent: str  # the mode at receipt
    upload: str  # an UploadState value
    anonymous_id: str
    daemon_version: str
    # W3C trace context (lowercase hex), set by spans and OTLP; None for a plain event.
    trace_id: str | None = None
    span_id: str | None = None
    parent_span_id: str | None = None
    # When a pending event the rate limit held back may be uploaded; None: at once.
    eligible_ms: int | None = None


# A uuid seen before is a duplicate, not an error: `INSERT OR IGNORE` skips it and the
# writer counts it from the rows that did not change.
INSERT_EVENT = (
    f"INSERT OR IGNORE INTO events ({', '.join(EventRow._fields)})"
    f" VALUES ({', '.join('?' * len(EventRow._fields))})"
)
