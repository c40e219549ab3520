"""Agents as subprocesses for the shim tests, and what they leave in the spool folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

from tests.shim_listener import CONTROL_PREFIX


def make_home() -> Path:
    """A fresh AGENT_TELEMETRY_HOME with its private run/ folder.

    Short path: a Unix socket path must fit in 107 bytes.
    """
    path = Path(tempfile.mkdtemp(prefix="at-", dir="/tmp"))
    (path / "run").mkdir(mode=0o700)
    return path


def start_agent(script: str, home: Path) -> subprocess.Popen[str]:
    """An agent process talking to the test over stdin/stdout, one JSON line at a time."""
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        env=agent_env(home),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdin is not None
    return proc


def agent_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENT_TELEMETRY_")}
    env.update(AGENT_TELEMETRY_HOME=str(home), PYTHONUNBUFFERED="1", **extra)
    return env


def run_agent(home: Path, code: str, timeout: float = 30, **env: str) -> str:
    """Run `code` as a script named agent_script.py to its exit; return its stdout."""
    script = home / "agent_script.py"
    script.write_text(textwrap.dedent(code))
    proc = subprocess.run(
        [sys.executable, str(script)],
        env=agent_env(home, **env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "", proc.stderr
    return proc.stdout


def last_json(stdout: str) -> dict[str, Any]:
    return json.loads(stdout.strip().splitlines()[-1])


class Spooled:
    """What the shims left in `<home>/data/spool/`."""

    def __init__(self, home: Path) -> None:
        self.folder = home / "data" / "spool"
        names = sorted(p.name for p in self.folder.iterdir()) if self.folder.exists() else []
        self.sealed = [self.folder / n for n in names if n.endswith(".ndjson")]
        self.temporary = [self.folder / n for n in names if n.endswith(".tmp")]
        self.events: list[dict[str, Any]] = []
        self.control: list[dict[str, Any]] = []
        for path in self.sealed:
            for line in path.read_bytes().splitlines():
                target = self.control if line.startswith(CONTROL_PREFIX) else self.events
                target.append(json.loads(line))
