"""Every command has help with an example and is documented in the README."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import click
import pytest

from agent_telemetryd.cli import main

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()
CONTEXT = click.Context(main)
COMMANDS = main.list_commands(CONTEXT)


def test_the_cli_has_the_documented_commands() -> None:
    required = {
        "daemon",
        "status",
        "export",
        "clear",
        "enable",
        "disable",
        "mode",
        "preview",
        "flush",
        "quarantine",
        "reset-id",
        "forget",
        "dashboard",
        "report",
        "service",
    }
    assert required <= set(COMMANDS)


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_has_help_and_is_in_the_readme(name: str) -> None:
    command = main.get_command(CONTEXT, name)
    assert command is not None, f"{name} does not resolve to a command"
    assert command.help and len(command.help.strip()) > 20, f"{name} has no help"
    if not isinstance(command, click.Group):
        assert "Example" in command.help, f"{name} help has no example"
    assert f"agent-telemetry {name}" in README, f"{name} is not in README.md"


def test_a_user_mistake_is_one_line_without_a_traceback(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(Path(sys.executable).parent / "agent-telemetry"), "export", "--format", "xml"],
        capture_output=True,
        text=True,
        env={"AGENT_TELEMETRY_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "'xml' is not one of" in result.stderr
