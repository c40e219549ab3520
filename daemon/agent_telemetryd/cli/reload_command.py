"""reload: the running daemon re-reads its config."""

from __future__ import annotations

import json
from typing import Any

import click

from agent_telemetryd.cli.api_client import DaemonUnavailableError
from agent_telemetryd.cli.common import api, daemon_pid, json_option, print_json, unavailable
from agent_telemetryd.config import read_config


@click.command()
@json_option
def reload(as_json: bool) -> None:
    """Make the running daemon re-read its config, without a restart.

    The sender and its keys, the upload interval and batch size, the rate limit, the
    allowlists and scrubbing, and the mode in the file take effect at once (a flush
    under way finishes with the old sender); no connection or event is dropped. The
    reply names what changed, what was applied and what needs a restart (paths, port,
    buffer limits). A config that does not load keeps the running settings, and every
    problem in it is listed. Sending the daemon SIGHUP does the same.

    \b
    Example:
        agent-telemetry reload
    """
    # The running daemon reads the config itself and its reply lists every problem; this
    # process's reading only finds the daemon, so it says nothing of its own about them.
    config, _problems = read_config()
    if daemon_pid(config) is None:
        raise click.ClickException(
            "the daemon is not running; it reads the config when it starts: agent-telemetry daemon"
        )
    client = api(config)
    try:
        response = client.request("POST", "/v1/reload")
        body = response.read()
    except TimeoutError:
        raise click.ClickException(unavailable(client.timed_out("POST"))) from None
    except DaemonUnavailableError as error:
        raise click.ClickException(unavailable(error)) from None
    try:
        reply = json.loads(body)
    except ValueError:
        raise click.ClickException(f"the daemon answered HTTP {response.status}") from None
    if as_json:
        print_json(reply)
    else:
        click.echo(describe(reply))
    if not reply.get("ok"):
        raise SystemExit(1)


def describe(reply: dict[str, Any]) -> str:
    if not reply.get("ok"):
        return "\n".join([f"Not reloaded: {reply['error']}.", *reply.get("problems", [])])
    lines = [f"Reloaded: {reply['summary']}."]
    for change in reply["changed"]:
        line = f"  {change['setting']}: {change['from']} → {change['to']}"
        if change["applied"]:
            line += f" (applied: {change['takes_effect']})"
        else:
            line += f" (needs a restart: {change['needs_restart_because']})"
        lines.append(line)
    lines.extend(f"Note: {note}." for note in reply.get("notes", []))
    return "\n".join(lines)
