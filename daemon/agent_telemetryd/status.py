"""The shape of `status --json` (DESIGN §11), whether the daemon answers or the file does."""

from __future__ import annotations

import sqlite3
from typing import Any

from agent_telemetryd import __version__
from agent_telemetryd.config import Config
from agent_telemetryd.consent import ConsentState
from agent_telemetryd.store import queries

EMPTY_BUFFER = {
    "events": 0,
    "pending_upload": 0,
    "sent": 0,
    "local_only": 0,
    "rate_limited": 0,
    "quarantined": 0,
    "bytes": 0,
}


def read_buffer(conn: sqlite3.Connection | None) -> tuple[dict[str, Any], dict[str, int], str]:
    """(buffer section, stored counters, anonymous id) from an open buffer, or empty ones."""
    if conn is None:
        return dict(EMPTY_BUFFER), {}, ""
    summary = queries.buffer_summary(conn)
    return (
        summary["buffer"],
        summary["stored_counters"],
        queries.get_meta(conn, "anonymous_id") or "",
    )


def build_status(
    *,
    config: Config,
    consent: ConsentState,
    running: bool,
    pid: int | None,
    buffer: dict[str, Any],
    stored_counters: dict[str, int],
    memory_counters: dict[str, int],
    anonymous_id: str,
    http_url: str | None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    totals = dict(stored_counters)
    for name, value in memory_counters.items():
        totals[name] = totals.get(name, 0) + value
    dropped = {
        name.split(".", 1)[1]: value
        for name, value in sorted(totals.items())
        if name.startswith("dropped.") and value
    }
    paths = config.paths
    status: dict[str, Any] = {
        "running": running,
        "pid": pid,
        "version": __version__,
        "mode": consent.mode,
        "mode_source": consent.source,
        "mode_reason": consent.reason,
        "mode_since": consent.since,
        "sender": config.sender,
        "anonymous_id": anonymous_id or None,
        "buffer": buffer,
        "counters": {
            "received": totals.get("received", 0),
            "rejected": totals.get("rejected", 0),
            "dropped": dropped,
            "dropped_total": sum(dropped.values()),
            "stored": buffer["events"],
        },
        "last_upload": None,
        "next_upload": None,
        "paths": {
            "ingest_socket": str(paths.ingest_socket),
            "api_socket": str(paths.api_socket),
            "http": http_url,
            "database": str(paths.database),
            "config": str(paths.config_file),
        },
    }
    if extra:
        status.update(extra)
    return status
