"""daemon, export, clear."""

from __future__ import annotations

import errno
import sys
import time
from collections.abc import Iterable
from pathlib import Path

import click

from agent_telemetryd.cli.buffer_access import (
    offline_file,
    read_buffer,
    refuse_buffer_as_output,
)
from agent_telemetryd.cli.common import call_api, confirm_deletion, daemon_pid, get_config
from agent_telemetryd.export import FORMATS, render_all
from agent_telemetryd.private_file import written_privately
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
    help="Only events received at or after TIME: a time back from now (90s, 30m, 24h, 7d, "
    "2w), epoch milliseconds, or RFC 3339 (2024-05-01T09:00:00Z).",
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
    if output is not None:
        refuse_buffer_as_output(config, output)
    with read_buffer(config) as conn:
        rows = queries.iter_export(conn, where=where) if conn is not None else iter(())
        if output is None:
            _to_stdout(render_all(rows, fmt))
            return
        try:
            # An export is the user's data, like the buffer: readable by them alone.
            with written_privately(output) as handle:
                for chunk in render_all(rows, fmt):
                    handle.write(chunk)
        except OSError as error:
            raise click.ClickException(f"cannot write {output}: {error.strerror}") from None


def _to_stdout(chunks: Iterable[bytes]) -> None:
    """Write to standard output; a write it refuses (a full disk behind `> file`) is one
    line. A reader that went away (`| head`) is click's to handle, quietly, as for any
    command."""
    out = sys.stdout.buffer
    try:
        for chunk in chunks:
            out.write(chunk)
        out.flush()
    except OSError as error:
        if error.errno == errno.EPIPE:
            raise
        raise click.ClickException(
            f"cannot write to standard output: {error.strerror or error}"
        ) from None


def _export_filter(
    since: str | None, until: str | None, agents: tuple[str, ...], events: tuple[str, ...]
) -> queries.ExportFilter:
    from agent_telemetryd.time_filters import parse_time

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
