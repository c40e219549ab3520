"""mode, enable, disable: the user's consent."""

from __future__ import annotations

import sys

import click

from agent_telemetryd.cli.common import call_api, daemon_pid, get_config, offline_buffer
from agent_telemetryd.config import MODES, Mode
from agent_telemetryd.mode_change import record_choice, withdraw_pending
from agent_telemetryd.service.envfile import backend_setup_hint

_NEXT_STEPS = {
    Mode.OFF: "Nothing is kept or sent. Keep events locally again: agent-telemetry mode local",
    Mode.LOCAL: "Events are kept for you only and never sent. "
    "Send them to the configured backend: agent-telemetry enable",
    Mode.UPLOAD: "Events received from now on are uploaded on schedule. "
    "Stop: agent-telemetry disable (pending events then stay local for good)",
}


def set_mode(mode: str) -> None:
    config = get_config()
    # The backend that matters is the one the daemon was started with, not this shell's.
    sender = config.sender
    if daemon_pid(config) is not None:
        result = call_api(config, "POST", "/v1/mode", {"mode": mode, "via": "cli"})
        effective, source, reason = result["mode"], result["mode_source"], result["mode_reason"]
        sender = str(result["sender"])
    else:
        after = record_choice(config, mode, via="cli")
        # Whatever this shell's environment says the mode was before: nothing stays pending.
        # `off` creates no buffer; one that exists is brought in line with the new mode.
        if not after.uploads and config.paths.database.exists():
            with offline_buffer(config) as conn:
                conn.execute("BEGIN IMMEDIATE")
                withdraw_pending(conn, after)
                conn.execute("COMMIT")
        effective, source, reason = after.mode, after.source, after.reason
    click.echo(f"Mode: {effective}")
    if effective != mode:
        click.echo(f"Stored {mode}, but {source} decides for now: {reason}.")
    click.echo(_NEXT_STEPS[effective])
    if effective == Mode.UPLOAD and sender == "none":
        click.echo(backend_setup_hint(config.paths.config_file, sys.platform))


@click.command()
@click.argument("mode", type=click.Choice(MODES))
def mode(mode: str) -> None:
    """Set the consent mode: off, local (the default) or upload.

    \b
    Example:
        agent-telemetry mode local
    """
    set_mode(mode)


@click.command()
def enable() -> None:
    """Upload events received from now on (same as `mode upload`).

    \b
    Example:
        agent-telemetry enable
    """
    set_mode(Mode.UPLOAD)


@click.command()
def disable() -> None:
    """Stop uploading; keep events locally (same as `mode local`).

    \b
    Example:
        agent-telemetry disable
    """
    set_mode(Mode.LOCAL)
