"""daemon, status, export, clear."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from agent_telemetryd.cli.common import (
    call_api,
    confirm_deletion,
    daemon_pid,
    get_config,
    json_option,
    offline_buffer,
    print_json,
    read_buffer,
    read_status,
)
from agent_telemetryd.export import FORMATS, render_all
from agent_telemetryd.store import queries


@click.command()
def daemon() -> None:
    """Run the daemon in the foreground (what the user service runs).

    \b
    Example:
        agent-telemetry daemon
    """
    # Imported when this command runs: `status`, `export` and `clear` share the module
    # and must not load the daemon (aiohttp, APScheduler) to answer.
    from agent_telemetryd.daemon import run_daemon
    from agent_telemetryd.logs import configure_logging

    config = get_config(strict=True)
    configure_logging(config.log_level)
    sys.exit(run_daemon(config))


@click.command()
@json_option
def status(as_json: bool) -> None:
    """Show the mode, what decided it, the buffer and every counter.

    Works with the daemon down: it then reads the buffer file.

    \b
    Example:
        agent-telemetry status --json
    """
    config = get_config()
    report = read_status(config)
    if as_json:
        print_json(report)
    else:
        click.echo(format_status(report))


def format_status(report: dict[str, Any]) -> str:
    running = f"running (pid {report['pid']})" if report["running"] else "not running"
    buffer, counters = report["buffer"], report["counters"]
    dropped = ", ".join(f"{k} {v}" for k, v in counters["dropped_by_reason"].items()) or "none"
    lines = [
        f"daemon:       {running}",
        f"mode:         {report['mode']}  ({report['mode_source']}: {report['mode_reason']})",
        f"sender:       {report['sender']}",
        f"events:       {buffer['events']} stored, {buffer['pending_upload']} pending upload, "
        f"{buffer['sent']} sent, {buffer['quarantined']} quarantined",
        f"received:     {counters['received']}  rejected: {counters['rejected']}  "
        f"dropped: {dropped}",
        f"last upload:  {report.get('last_upload') or 'never'}",
        f"next upload:  {report.get('next_upload') or 'not scheduled'}",
        *_rate_limited_lines(report),
        f"buffer file:  {report['paths']['database']} ({buffer['bytes']} bytes)",
        f"ingest:       {report['paths']['ingest_socket']}",
        f"http:         {report['paths']['http'] or 'off'}",
    ]
    return "\n".join(lines)


def _rate_limited_lines(report: dict[str, Any]) -> list[str]:
    lines = []
    waiting = report.get("rate_limit") or {}
    if waiting.get("events"):
        listed = ", ".join(f"{agent} {count}" for agent, count in waiting["by_source"].items())
        lines.append(f"waiting:      {listed} ({waiting['why']})")
    by_source = (report.get("upload") or {}).get("rate_limited_by_source") or {}
    if by_source:
        listed = ", ".join(f"{agent} {count}" for agent, count in by_source.items())
        lines.append(
            f"rate limited: {listed} (past the backlog of {waiting.get('backlog_cap', '?')} "
            "waiting events per source: kept locally, never uploaded)"
        )
    return lines


@click.command()
@click.option(
    "--format", "fmt", type=click.Choice(list(FORMATS)), default="json", show_default=True
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write to this file instead of standard output.",
)
def export(fmt: str, output: Path | None) -> None:
    """Export every stored event (JSON, NDJSON or CSV with properties as JSON text).

    \b
    Example:
        agent-telemetry export --format csv -o events.csv
    """
    config = get_config()
    with read_buffer(config) as conn:
        rows = queries.iter_export(conn) if conn is not None else iter(())
        if output is None:
            out = sys.stdout.buffer
            for chunk in render_all(rows, fmt):
                out.write(chunk)
            out.flush()
            return
        try:
            with output.open("wb") as handle:
                for chunk in render_all(rows, fmt):
                    handle.write(chunk)
        except OSError as error:
            raise click.ClickException(f"cannot write {output}: {error.strerror}") from None


@click.command()
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def clear(yes: bool) -> None:
    """Delete every stored event from the local buffer.

    \b
    Example:
        agent-telemetry clear --yes
    """
    config = get_config()
    confirm_deletion(yes, "clear", "Delete every stored event?")
    if daemon_pid(config) is not None:
        deleted = call_api(config, "POST", "/v1/clear")["deleted"]
    elif config.paths.database.exists():
        with offline_buffer(config) as conn:
            conn.execute("BEGIN IMMEDIATE")
            deleted = queries.clear_events(conn)
            conn.execute("COMMIT")
            queries.compact(conn)
    else:
        deleted = 0
    click.echo(f"Deleted {deleted} events.")
