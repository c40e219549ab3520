"""The `agent-telemetry` program: `agent-telemetry daemon` starts without the command line.

The daemon command is what the service runs, and what every socket activation starts. It
needs nothing of click or of the other commands' modules (the API client and its
http.client, the offline readers of the buffer): about 2 MB resident for the daemon's
whole life, and part of every start's import time. So that command line (with or without
the service's `--env-file FILE` in front) is recognised here and the daemon started
directly; every other one, `--help` included, goes to the click CLI (cli/__init__.py),
whose `daemon` command runs the same `run_daemon_command`.
"""

from __future__ import annotations

import sys
from pathlib import Path

from agent_telemetryd.terminal import HeldHangup

EXIT_USAGE_ERROR = 1  # as click's for a bad --env-file


def main() -> None:
    args = sys.argv[1:]
    if args == ["daemon"]:
        sys.exit(run_daemon_command(HeldHangup()))  # before anything else: terminal.py
    # (A folder given as FILE is the CLI's to refuse, with its own message.)
    if (
        len(args) == 3
        and args[0] == "--env-file"
        and args[2] == "daemon"
        and not Path(args[1]).is_dir()
    ):
        held = HeldHangup()
        load_env_file(Path(args[1]))
        sys.exit(run_daemon_command(held))
    from agent_telemetryd.cli import main as cli

    cli()


def run_daemon_command(held: HeldHangup | None = None) -> int:
    """Read the config, refusing to start on any problem in it (every one named, exit 3:
    no restart loop) but keys this version does not know (warned of; uploads wait), and
    run the daemon until it stops; returns its exit code. `held`: SIGHUP held since the
    process began, else from here."""
    held = held if held is not None else HeldHangup()
    from agent_telemetryd.config import read_config
    from agent_telemetryd.config_problems import refused_by_the_daemon
    from agent_telemetryd.daemon import EXIT_STARTUP_FAILURE, run_daemon
    from agent_telemetryd.logs import configure_logging

    config, problems = read_config()
    refused = refused_by_the_daemon(problems)
    for problem in problems:
        print(f"{'Error' if refused else 'Warning'}: {problem}", file=sys.stderr)
    if refused:
        return EXIT_STARTUP_FAILURE
    configure_logging(config.log_level)
    return run_daemon(config, held)


def load_env_file(path: Path) -> None:
    """`--env-file FILE` as the CLI reads it: NAME=value lines into the environment; a
    missing file is skipped, a bad one is one line and exit 1."""
    import os

    from agent_telemetryd.service.envfile import EnvFileError
    from agent_telemetryd.service.envfile import load_env_file as load

    try:
        load(path, os.environ)
    except EnvFileError as error:
        print(f"Error: {error}", file=sys.stderr)
        sys.exit(EXIT_USAGE_ERROR)
