"""Every `agent-telemetry-server` command has help with an example and is in docs/server.md."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from agent_telemetry_server.cli import main

DOCS = (Path(__file__).resolve().parents[2] / "docs" / "server.md").read_text()


@pytest.mark.parametrize("name", sorted(main.commands))
def test_command_has_help_with_an_example_and_is_documented(name: str) -> None:
    result = CliRunner().invoke(main, [name, "--help"])
    assert result.exit_code == 0, result.output
    assert "Example" in result.output or "example" in result.output, name
    assert f"agent-telemetry-server {name}" in DOCS, f"{name} is not in docs/server.md"
