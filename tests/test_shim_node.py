"""Runs the Node shim's own tests (`node --test`), so `make test` covers both shims."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.tools import required_tool

NODE_SHIM = Path(__file__).resolve().parent.parent / "client_shim" / "node"
# Where the Node tests make their temporary homes (short: a socket path must fit in 107 bytes).
NODE_TEMP_PREFIX = "atn-"


def test_node_shim_suite_passes() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENT_TELEMETRY_")}
    before = set(Path("/tmp").glob(f"{NODE_TEMP_PREFIX}*"))
    proc = subprocess.run(
        [required_tool("nodejs", "node"), "--test", str(NODE_SHIM)],
        env=env,
        capture_output=True,
        text=True,
        timeout=110,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "# fail 0" in proc.stdout
    # Each test process's shim spools its drop counts as it exits, after the test hooks:
    # its home must still go, not pile up under /tmp run after run.
    left = set(Path("/tmp").glob(f"{NODE_TEMP_PREFIX}*")) - before
    assert not left, f"the Node tests left {sorted(map(str, left))}"
