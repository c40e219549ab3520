"""flush: upload pending events now, through the daemon, and say what happened.

A module of its own, without the senders and the upload machinery the other upload
commands load: the upload timer runs it every interval, and with the daemon up all it
does is ask api.sock. With the daemon down it reads the buffer file first (is anything due?),
and only then loads the store.
"""

from __future__ import annotations

import sqlite3
import time
from typing import Any

import click

from agent_telemetry._wire import format_timestamp
from agent_telemetryd.cli.common import api, daemon_pid, get_config, json_option, print_json
from agent_telemetryd.config import Config
from agent_telemetryd.consent import decide, read_stored

# A flush may wait on backoff and Retry-After; the CLI waits for its whole report.
FLUSH_TIMEOUT = 900.0
# The flush was held by a wait: the backend asked not to be contacted yet, or the pause
# after it stayed down is still running (the flush that found it down exited 1). Try later:
# sysexits' EX_TEMPFAIL. The upload timer's unit counts it as success, so a Retry-After of
# an hour does not mark the user's service failed at every tick.
EXIT_BACKEND_WAITING = 75
WAIT_ENDINGS = frozenset({"asked to wait", "backend waiting"})


@click.command()
@json_option
def flush(as_json: bool) -> None:
    """Upload pending events now and wait for the result.

    Exits non-zero when the backend failed; the events then stay pending for the next run.
    Exit 75: the backend asked to be left alone (or is paused after it stayed down) until
    the time the output gives.

    \b
    Example:
        agent-telemetry flush --json
    """
    config = get_config()
    if daemon_pid(config) is None:
        nothing = _nothing_to_flush(config)
        if nothing is not None:
            # Said without the daemon: asking it would start it (socket activation) only
            # to hear the same. The upload timer runs this even while nothing is pending.
            _print_flush(_skipped_report(nothing), as_json)
            return
    _require_daemon(config, "flush")
    # The report comes at the end of the flush, however long it takes to send.
    client = api(config, work=FLUSH_TIMEOUT)
    try:
        report = client.json("POST", "/v1/flush")
    except Exception as error:
        raise click.ClickException(str(error)) from None
    _print_flush(report, as_json)
    if report.get("error"):
        raise SystemExit(EXIT_BACKEND_WAITING if report.get("ended") in WAIT_ENDINGS else 1)


def _print_flush(report: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(report)
    else:
        click.echo(_describe_flush(report))


def _nothing_to_flush(config: Config) -> str | None:
    """Why a flush would send nothing, read from the consent and the buffer file (what the
    daemon itself would say), or None when it may have something to send."""
    consent = decide(config, read_stored(config.paths.consent_file))
    if not consent.uploads:
        return f"mode is {consent.mode} ({consent.reason}): nothing is uploaded"
    if config.sender == "none":
        return "sender is none: nothing is sent (set AGENT_TELEMETRY_SENDER)"
    # The store, only now: with the daemon up, flush never reads the file.
    from agent_telemetryd.cli.buffer_access import read_buffer
    from agent_telemetryd.ratelimit import PLACED_UNDER, placed_under
    from agent_telemetryd.store import queries, upload_queries

    with read_buffer(config) as conn:
        if conn is None:
            return "no events are pending upload"
        try:
            now_ms = int(time.time() * 1000)
            if upload_queries.pending_page(conn, 0, 1, now_ms):
                return None
            waiting = upload_queries.pending_count(conn)
            if not waiting:
                return "no events are pending upload"
            rules = placed_under(config.rate_limit, config.rate_limit_backlog)
            if queries.get_meta(conn, PLACED_UNDER) != rules:
                # They wait under rules the config no longer has (edited while the daemon
                # was down): the daemon places them again when it starts, and `off` or a
                # looser rule makes them due at once.
                return None
            next_ms = upload_queries.waiting(conn, now_ms)["next_ms"]
        except sqlite3.OperationalError:
            return None  # a buffer the daemon has yet to migrate: let it answer
    first = f"; the first is due at {format_timestamp(next_ms)}" if next_ms else ""
    return f"none of the {waiting} pending events is due yet (the rate limit holds them{first})"


def _skipped_report(reason: str) -> dict[str, Any]:
    from agent_telemetryd.upload.flush import FlushReport  # the report the daemon would give

    now = format_timestamp(int(time.time() * 1000))
    report = FlushReport(trigger="command", started_at=now, finished_at=now, skipped=reason)
    return report.as_dict()


def _describe_flush(report: dict[str, Any]) -> str:
    if report.get("skipped"):
        return f"Nothing sent: {report['skipped']}."
    lines = [f"Sent {report['events_sent']} events in {report['batches']} batches."]
    if report.get("quarantined"):
        lines.append(
            f"Quarantined {report['quarantined']} events the backend refused "
            "(see: agent-telemetry quarantine)."
        )
    waiting = report.get("waiting") or {}
    if waiting.get("events"):
        lines.append(f"Waiting: {waiting['why']}.")
    if report.get("stopped"):
        lines.append(f"Stopped: {report['stopped']}.")
    if report.get("error"):
        lines.append(f"Error: {report['error']}")
    return "\n".join(lines)


def _require_daemon(config: Config, command: str) -> None:
    # With socket activation (agent-telemetry.socket) api.sock exists while the daemon is
    # stopped, and connecting to it starts the daemon: how the flush timer uploads on time
    # (when there is something to upload: see _nothing_to_flush).
    if daemon_pid(config) is None and not config.paths.api_socket.exists():
        raise click.ClickException(
            f"{command} needs the daemon; start it with: agent-telemetry daemon "
            "(or agent-telemetry service install)"
        )
