"""The code stays within the bounds the project set itself: ruff's rules (complexity at
most 12 paths and 50 statements a function in daemon/, client_shim/ and server/) and its
formatting, checked with the configuration in pyproject.toml."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUFF = str(Path(sys.executable).parent / "ruff")


def test_ruff_finds_nothing_and_the_complexity_bound_is_on() -> None:
    settings = subprocess.run(
        [RUFF, "check", "--show-settings", "daemon/agent_telemetryd/daemon.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "max_complexity = 12" in settings
    assert "max_statements = 50" in settings
    result = subprocess.run(
        [RUFF, "check", "daemon", "client_shim", "server", "tests", "bench"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout


def test_the_tree_is_formatted() -> None:
    result = subprocess.run(
        [RUFF, "format", "--check", "."], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout
