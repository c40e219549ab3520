"""daemon, status, export, clear."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import click

from agent_telemetryd.cli.common import (
    call_api,
    confirm_deletion,
    daemon_pid,
    get_config,
    json_option,
    offline_file,
    print_json,
    read_buffer,
    read_status,
)
from agent_telemetryd.config import Config
from agent_telemetryd.export import FORMATS, render_all
from agent_telemetryd.store import offline_writes, queries


@click.command()
def daemon() -> None:
    """Run the daemon in the foreground (what the user service runs).

    \b
    Example:
        agent-telemetry daemon
    """
    # `agent-telemetry daemon` itself starts without click (entry.py); this is the same
    # start, e.g. for `agent-telemetry --env-file FILE daemon` with FILE a folder.
    from agent_telemetryd.entry import run_daemon_command

    sys.exit(run_daemon_command())


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
        click.echo(format_status(report, config))


def format_status(report: dict[str, Any], config: Config) -> str:
    if report["running"]:
        running = f"running (pid {report['pid']})"
    elif _someone_listens(config.paths.api_socket):
        running = "not running; its sockets are open (socket activation): the next event starts it"
    else:
        running = (
            "not running (start it: agent-telemetry daemon, or agent-telemetry service install)"
        )
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
        f"http:         {_http_line(report, config)}",
    ]
    return "\n".join(lines)


def _someone_listens(path: Path) -> bool:
    """Whether a listening Unix socket is bound at `path` (a socket unit holding it for a
    stopped daemon), read from /proc/net/unix: connecting to find out would start the
    daemon. False where there is no /proc (macOS, where launchd does not hold sockets)."""
    try:
        table = Path("/proc/net/unix").read_text(errors="replace")
    except OSError:
        return False
    listening = 0x10000  # __SO_ACCEPTCON in the Flags column
    for line in table.splitlines()[1:]:
        fields = line.split(None, 7)
        if len(fields) == 8 and fields[7] == str(path) and int(fields[3], 16) & listening:
            return True
    return False


def _http_line(report: dict[str, Any], config: Config) -> str:
    """The URL the daemon listens on; with the daemon down, the one it is configured for."""
    if report["running"]:
        return report["paths"]["http"] or "off (http_port = off)"
    if config.http_port is None:
        return "off (http_port = off)"
    if config.http_port == 0:
        return "a free loopback port picked at start (http_port = 0); the daemon is not running"
    host = f"[{config.http_host}]" if ":" in config.http_host else config.http_host
    return f"http://{host}:{config.http_port} (configured; the daemon is not running)"


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
@click.option(
    "--since",
    metavar="TIME",
    help="Only events received at or after TIME: 24h or 7d back from now, epoch "
    "milliseconds, or RFC 3339 (2024-05-01T09:00:00Z).",
)
@click.option("--until", metavar="TIME", help="Only events received before TIME (same forms).")
@click.option("--agent", "agents", multiple=True, help="Only this source; repeat for more.")
@click.option("--event", "events", multiple=True, help="Only this event name; repeat for more.")
def export(
    fmt: str,
    output: Path | None,
    since: str | None,
    until: str | None,
    agents: tuple[str, ...],
    events: tuple[str, ...],
) -> None:
    """Export stored events (JSON, NDJSON or CSV with properties as JSON text).

    Every event unless filtered; times are receipt times, as on the dashboard.

    \b
    Example:
        agent-telemetry export --format csv -o events.csv
        agent-telemetry export --since 24h --agent my-agent --event tool.call
    """
    where = _export_filter(since, until, agents, events)
    config = get_config()
    with read_buffer(config) as conn:
        rows = queries.iter_export(conn, where=where) if conn is not None else iter(())
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


def _export_filter(
    since: str | None, until: str | None, agents: tuple[str, ...], events: tuple[str, ...]
) -> queries.ExportFilter:
    from agent_telemetryd.dashboard.filters import parse_time

    now_ms = int(time.time() * 1000)
    try:
        since_ms = parse_time(since, now_ms, "--since")
        until_ms = parse_time(until, now_ms, "--until")
    except ValueError as error:
        raise click.BadParameter(str(error)) from None
    if since_ms is not None and until_ms is not None and until_ms <= since_ms:
        raise click.BadParameter("--until must be later than --since")
    return queries.ExportFilter(since_ms, until_ms, agents, events)


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
        # A fresh file in place of the old one, as the daemon does: on a full disk too.
        with offline_file(config) as file:
            deleted = offline_writes.clear(file)
    else:
        deleted = 0
    click.echo(f"Deleted {deleted} events.")
