"""The shape of `status --json`, whether the daemon answers or the file does."""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass, field
from typing import Any

from agent_telemetry._wire import format_timestamp
from agent_telemetryd import __version__
from agent_telemetryd.config import Config
from agent_telemetryd.consent import ConsentState
from agent_telemetryd.consent_env import consent_environment
from agent_telemetryd.ratelimit import PLACED_UNDER, placed_under, waiting_report
from agent_telemetryd.store import queries, upload_queries
from agent_telemetryd.upload import receipts


@dataclass(frozen=True)
class BufferFacts:
    """What `status` reads from the buffer file: the same whether the daemon runs or not."""

    buffer: dict[str, Any] = field(default_factory=lambda: dict(queries.EMPTY_BUFFER))
    stored_counters: dict[str, int] = field(default_factory=dict)
    anonymous_id: str = ""
    last_upload_ms: int | None = None
    rate_limited_by_source: dict[str, int] = field(default_factory=dict)  # the most, at most 20
    rate_limited_sources: int = 0  # every source with events kept local past the cap
    waiting: dict[str, Any] = field(default_factory=dict)  # upload_queries.waiting
    placed_under: str | None = None  # the rules what waits was placed under (meta)


def read_facts(conn: sqlite3.Connection | None, now_ms: int | None = None) -> BufferFacts:
    if conn is None:
        return BufferFacts()
    now_ms = now_ms if now_ms is not None else time.time_ns() // 1_000_000
    summary = queries.buffer_summary(conn)
    rate_limited_by_source, rate_limited_sources = upload_queries.rate_limited_sources(conn)
    return BufferFacts(
        buffer=summary["buffer"],
        stored_counters=summary["stored_counters"],
        anonymous_id=queries.get_meta(conn, "anonymous_id") or "",
        last_upload_ms=receipts.last_accepted_ms(conn),
        rate_limited_by_source=rate_limited_by_source,
        rate_limited_sources=rate_limited_sources,
        waiting=upload_queries.waiting(conn, now_ms),
        placed_under=queries.get_meta(conn, PLACED_UNDER),
    )


def build_status(
    *,
    config: Config,
    consent: ConsentState,
    running: bool,
    pid: int | None,
    facts: BufferFacts,
    memory_counters: dict[str, int],
    http_url: str | None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    buffer = facts.buffer
    totals = dict(facts.stored_counters)
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
        # The consent variables of the environment that decided (the daemon's, when it
        # answers): a command compares them with its own shell's.
        "consent_environment": consent_environment(config),
        "sender": config.sender,
        "anonymous_id": facts.anonymous_id or None,
        "buffer": buffer,
        "counters": {
            "received": totals.get("received", 0),
            "rejected": totals.get("rejected", 0),
            # `dropped` is the total; the reasons that make it up beside it.
            "dropped": sum(dropped.values()),
            "dropped_by_reason": dropped,
            "stored": buffer["events"],
            # Lines with fields this daemon does not know (a newer shim's): kept local.
            "kept_local_unknown_fields": totals.get("kept_local.unknown_fields", 0),
        },
        "last_upload": format_timestamp(facts.last_upload_ms) if facts.last_upload_ms else None,
        "next_upload": None,
        "paths": {
            "ingest_socket": str(paths.ingest_socket),
            "api_socket": str(paths.api_socket),
            "http": http_url,
            "database": str(paths.database),
            "config": str(paths.config_file),
        },
    }
    status["upload"] = {
        "rate_limited_by_source": facts.rate_limited_by_source,
        "held": config.uploads_held,
    }
    # Pending events the limit holds back (they go later) and those beyond the backlog
    # cap (kept local for good), side by side: nothing is held back out of sight.
    status["rate_limit"] = {
        **waiting_report(facts.waiting, config.rate_limit, config.rate_limit_backlog),
        "rate_limited": buffer.get("rate_limited", 0),
        "rate_limited_by_source": facts.rate_limited_by_source,
        "rate_limited_sources": facts.rate_limited_sources,
    }
    _placed_under_other_rules(status["rate_limit"], facts.placed_under, config)
    if extra:
        extra = dict(extra)
        status["upload"].update(extra.pop("upload", {}))
        status.update(extra)
    return status


def _placed_under_other_rules(report: dict[str, Any], placed: str | None, config: Config) -> None:
    """What waits was placed under rules the config no longer has (edited while the daemon
    was down): the daemon places it again at its start, so the config's rule is not yet
    what holds it, and `why` says so."""
    if not report["events"] or placed is None:
        return
    if placed == placed_under(config.rate_limit, config.rate_limit_backlog):
        return
    rule = placed.split(";", 1)[0]
    report["placed_under"] = rule
    report["why"] += (
        f"; they were placed under {rule}, and the daemon places them again under"
        f" {report['rule']} when it starts"
    )
