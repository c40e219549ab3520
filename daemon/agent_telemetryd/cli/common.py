"""What every command needs: the config, whether the daemon runs, one-line errors.

Light on purpose: the buffer file's access (and the store behind it) is in
cli/buffer_access.py, imported by the commands that read or write the file.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from agent_telemetryd.cli.api_client import ApiClient, ApiError, DaemonUnavailableError
from agent_telemetryd.config import Config, read_config
from agent_telemetryd.lock import running_pid

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")


# The daemon's exit status for a start that cannot work (its unit's RestartPreventExitStatus).
EXIT_STARTUP_FAILURE = 3


def get_config(*, strict: bool = False, from_doctor: bool = False) -> Config:
    """The config. Every problem in it is named at once, a line each. Only the daemon
    (`strict`) refuses to start on them (exit 3); every other command warns and runs with
    the values that failed at their defaults: the user must always be able to look,
    stop, export and erase."""
    config, problems = read_config()
    if not problems:
        return config
    if strict:
        for problem in problems:
            click.echo(f"Error: {problem}", err=True)
        raise SystemExit(EXIT_STARTUP_FAILURE)
    for problem in problems:
        click.echo(f"Warning: {problem}", err=True)
    rest = "" if from_doctor else "; `agent-telemetry doctor` checks the rest"
    click.echo(f"Warning: running with the settings above at their defaults{rest}", err=True)
    return config


def daemon_pid(config: Config) -> int | None:
    return running_pid(config.paths.lock_file)


def api(config: Config) -> ApiClient:
    return ApiClient(config.paths.api_socket)


def call_api(config: Config, method: str, path: str, body: Any = None) -> Any:
    try:
        return api(config).json(method, path, body)
    except (ApiError, DaemonUnavailableError) as error:
        raise click.ClickException(str(error)) from None


def print_json(value: Any) -> None:
    json.dump(value, sys.stdout, indent=2)
    sys.stdout.write("\n")


def read_status(config: Config) -> dict[str, Any]:
    """The daemon's status when it runs (it has counters not yet on disk), else the file's."""
    if daemon_pid(config) is not None:
        return dict(call_api(config, "GET", "/v1/status"))
    from agent_telemetryd.cli.buffer_access import offline_status  # the store: only now

    return offline_status(config)


def confirm_deletion(yes: bool, command: str, question: str) -> None:
    """Ask before deleting; without a terminal to ask on, insist on --yes (never wait)."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise click.ClickException(f"{command} deletes every stored event; pass --yes to confirm")
    click.confirm(question, abort=True)
