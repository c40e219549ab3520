"""What every command needs: the config, whether the daemon runs, one-line errors.

Light on purpose: the buffer file's access (and the store behind it) is in
cli/buffer_access.py, imported by the commands that read or write the file.
"""

from __future__ import annotations

import json
import math
import os
import sys
from typing import Any

import click

from agent_telemetryd.cli.api_client import (
    DEFAULT_TIMEOUT,
    ApiClient,
    ApiError,
    DaemonTimeoutError,
    DaemonUnavailableError,
)
from agent_telemetryd.config import Config, read_config
from agent_telemetryd.config_values import parse_duration
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


# How long a command waits for the daemon's answer: a script (or a test) may shorten it.
API_TIMEOUT_VARIABLE = "AGENT_TELEMETRY_API_TIMEOUT"


def api_timeout() -> float:
    raw = os.environ.get(API_TIMEOUT_VARIABLE, "").strip()
    if not raw:
        return DEFAULT_TIMEOUT
    try:
        return parse_duration(raw)
    except ValueError as error:
        raise click.ClickException(f"{API_TIMEOUT_VARIABLE}: {error}") from None


def api(config: Config, work: float = 0.0) -> ApiClient:
    return ApiClient(config.paths.api_socket, api_timeout(), work)


def call_api(config: Config, method: str, path: str, body: Any = None, *, work: float = 0.0) -> Any:
    """`work`: seconds to wait beyond the timeout for a request whose work is long."""
    try:
        return api(config, work).json(method, path, body)
    except DaemonUnavailableError as error:
        raise click.ClickException(unavailable(error)) from None
    except ApiError as error:
        raise click.ClickException(str(error)) from None


def unavailable(error: DaemonUnavailableError) -> str:
    """The one line for a daemon that could not be asked, or did not answer in time; for a
    command that changes something, whether it may still take effect (it may not)."""
    if not isinstance(error, DaemonTimeoutError):
        return str(error)
    if error.accept_within is None:
        return f"{error}; check it with: agent-telemetry doctor"
    return (
        f"{error}: the command was NOT applied, and will not be (the daemon refuses it once "
        f"{error.accept_within:g} s have passed); check the daemon with: agent-telemetry "
        "doctor, then run the command again"
    )


def print_json(value: Any) -> None:
    """`value` as JSON a script can parse: json.dump writes an infinite float (a sum that
    overflowed) as `Infinity`, which is not JSON (jq, JavaScript and Go refuse the whole
    output); it is null, as the dashboard's answers have it."""
    json.dump(_finite(value), sys.stdout, indent=2, allow_nan=False)
    sys.stdout.write("\n")


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def read_status(config: Config, *, from_files_if_silent: bool = False) -> dict[str, Any]:
    """The daemon's status when it runs (it has counters not yet on disk), else the file's.
    With `from_files_if_silent`, a daemon that runs but does not answer gets the files'
    status too, with `unanswered` saying why (the counters since its start are not there)."""
    pid = daemon_pid(config)
    silent = None
    if pid is not None:
        try:
            return dict(api(config).json("GET", "/v1/status"))
        except ApiError as error:
            raise click.ClickException(str(error)) from None
        except DaemonUnavailableError as error:
            if not from_files_if_silent:
                raise click.ClickException(unavailable(error)) from None
            silent = str(error)
    from agent_telemetryd.cli.buffer_access import offline_status  # the store: only now

    report = offline_status(config)
    if silent is not None:
        report.update(running=True, pid=pid, unanswered=silent)
    return report


def confirm_deletion(yes: bool, command: str, question: str) -> None:
    """Ask before deleting; without a terminal to ask on, insist on --yes (never wait)."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise click.ClickException(f"{command} deletes every stored event; pass --yes to confirm")
    click.confirm(question, abort=True)
