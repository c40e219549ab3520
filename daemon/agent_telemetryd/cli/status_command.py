"""status: the mode, the buffer and every counter, from the running daemon or the file.

A module of its own because it is the command run most often (by people, scripts and
service checks): with the daemon up it needs only the config and api.sock, none of the
store that `export` and `clear` import.
"""

from __future__ import annotations

from typing import Any

import click

from agent_telemetryd.cli.common import get_config, json_option, print_json, read_status
from agent_telemetryd.cli.consent_hints import shell_warning
from agent_telemetryd.config import Config
from agent_telemetryd.consent_env import consent_environment
from agent_telemetryd.socket_table import listening_at


@click.command()
@json_option
def status(as_json: bool) -> None:
    """Show the mode, what decided it, the buffer and every counter.

    Works with the daemon down: it then reads the buffer file. So it does, and exits 1,
    when the daemon runs but does not answer.

    \b
    Example:
        agent-telemetry status --json
    """
    config = get_config()
    report = read_status(config, from_files_if_silent=True)
    if report["running"] and not report.get("unanswered"):
        mine = consent_environment(config)
        warning = shell_warning(mine, report.get("consent_environment"), config)
        if warning is not None:
            click.echo(warning, err=True)
    if as_json:
        print_json(report)
    else:
        click.echo(format_status(report, config))
    if report.get("unanswered"):
        # Told, but not a success: a script waiting for the daemon keeps waiting.
        raise SystemExit(1)


# Reasons counted among the drops that lose nothing: said so, so that a copy an agent sent
# again (at a reconnect or its exit) does not read as a loss.
_DROP_NOTES = {"duplicate": " (copies of events already stored)"}


def format_status(report: dict[str, Any], config: Config) -> str:
    if report.get("unanswered"):
        running = (
            f"running (pid {report['pid']}) but not answering ({report['unanswered']}); "
            "the rest is read from the files: check it with agent-telemetry doctor"
        )
    elif report["running"]:
        running = f"running (pid {report['pid']})"
    elif listening_at(config.paths.api_socket):
        running = "not running; its sockets are open (socket activation): the next event starts it"
    else:
        running = (
            "not running (start it: agent-telemetry daemon, or agent-telemetry service install)"
        )
    buffer, counters = report["buffer"], report["counters"]
    dropped = (
        ", ".join(
            f"{reason} {count}{_DROP_NOTES.get(reason, '')}"
            for reason, count in counters["dropped_by_reason"].items()
        )
        or "none"
    )
    if report.get("buffer_error"):
        contents = [f"events:       unknown: {report['buffer_error']}"]
    else:
        # Every state the stored events are in, so the parts add up to what is stored
        # (local-only events, the default mode's, were not shown at all).
        contents = [
            f"events:       {buffer['events']} stored: {buffer['pending_upload']} pending "
            f"upload, {buffer['sent']} sent, {buffer.get('local_only', 0)} local only, "
            f"{buffer.get('rate_limited', 0)} rate limited, {buffer['quarantined']} quarantined",
            f"received:     {counters['received']}  rejected: {counters['rejected']}  "
            f"dropped: {dropped}",
        ]
        if counters.get("kept_local_unknown_fields"):
            contents.append(
                f"newer shims:  {counters['kept_local_unknown_fields']} events carried fields "
                "this daemon does not know: kept local, never uploaded; upgrade agent-telemetry"
            )
    lines = [
        f"daemon:       {running}",
        f"mode:         {report['mode']}  ({report['mode_source']}: {report['mode_reason']})",
        f"sender:       {report['sender']}",
        *contents,
        f"last upload:  {report.get('last_upload') or 'never'}",
        f"next upload:  {report.get('next_upload') or 'not scheduled'}",
        *_held_lines(report),
        *_rate_limited_lines(report),
        f"buffer file:  {report['paths']['database']}{_size(report)}",
        f"ingest:       {report['paths']['ingest_socket']}",
        f"http:         {_http_line(report, config)}",
        *_otlp_lines(report),
    ]
    return "\n".join(lines)


def _held_lines(report: dict[str, Any]) -> list[str]:
    held = (report.get("upload") or {}).get("held")
    return [f"uploads held: {held}"] if held else []


def _http_line(report: dict[str, Any], config: Config) -> str:
    """The URL the daemon listens on; with the daemon down, the one it is configured for."""
    if report["running"] and not report.get("unanswered"):
        if report.get("http_unavailable"):
            return f"none, the daemon runs on its sockets only: {report['http_unavailable']}"
        return report["paths"]["http"] or "off (http_port = off)"
    why = "does not answer" if report.get("unanswered") else "is not running"
    if config.http_port is None:
        return "off (http_port = off)"
    if config.http_port == 0:
        return f"a free loopback port picked at start (http_port = 0); the daemon {why}"
    host = f"[{config.http_host}]" if ":" in config.http_host else config.http_host
    return f"http://{host}:{config.http_port} (configured; the daemon {why})"


def _otlp_lines(report: dict[str, Any]) -> list[str]:
    """The optional OTLP listeners the running daemon has, or why one it was asked for is
    missing (it runs without it: status must say so, as for the main port)."""
    otlp = report.get("otlp") or {}
    shown = []
    for transport, name in (("http", "OTLP/HTTP"), ("grpc", "OTLP/gRPC")):
        if otlp.get(f"{transport}_unavailable"):
            shown.append(f"no {name} listener: {otlp[f'{transport}_unavailable']}")
        elif otlp.get(transport):
            shown.append(f"{name} {otlp[transport]}")
    return [f"otlp:         {'; '.join(shown)}"] if shown else []


def _size(report: dict[str, Any]) -> str:
    if report.get("buffer_error"):
        return " (cannot be read)"
    return f" ({report['buffer']['bytes']} bytes)"


def _rate_limited_lines(report: dict[str, Any]) -> list[str]:
    lines = []
    waiting = report.get("rate_limit") or {}
    if waiting.get("events"):
        listed = _listed(waiting["by_source"], waiting.get("sources"))
        lines.append(f"waiting:      {listed} ({waiting['why']})")
    by_source = (report.get("upload") or {}).get("rate_limited_by_source") or {}
    if by_source:
        listed = _listed(by_source, waiting.get("rate_limited_sources"))
        lines.append(
            f"rate limited: {listed} (past the backlog of {waiting.get('backlog_cap', '?')} "
            f"waiting events per source, {waiting.get('all_sources_backlog_cap', '?')} for all "
            "sources together: kept locally, never uploaded)"
        )
    return lines


def _listed(by_source: dict[str, int], sources: int | None) -> str:
    """`planner 20, coder 3`, and how many other sources the status left out."""
    listed = ", ".join(f"{agent} {count}" for agent, count in by_source.items())
    others = (sources or 0) - len(by_source)
    if others > 0:
        listed += f" and {others} more {'source' if others == 1 else 'sources'}"
    return listed
