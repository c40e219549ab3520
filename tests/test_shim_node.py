"""Runs the Node shim's own tests (`node --test`), so `make test` covers both shims."""

from __future__ import annotations

import json
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


# Values a user may put in the environment: words, numbers, padding of every kind that
# Python's str.strip() removes (or, like U+FEFF, does not).
FLAG_VALUES = [
    *("", "0", "1", "false", "FALSE", "no", "off", "Off", "yes", "local", "upload", "UPLOAD"),
    *(" 0 ", "\t1\n", "0\x1f", "\x1coff", "off\x85", "\ufeff0", "\u3000no", "no\xa0", "o ff"),
    *("local\x1e", "\x1dupload", "\ufeffoff", " off\u2029"),
]


def test_node_reads_the_disabled_flag_and_the_mode_as_the_python_shim() -> None:
    """Whether a value silences the agent, or turns the mode off, is the same in both shims."""
    from agent_telemetry._consent import mode_is_off
    from agent_telemetry._settings import flag_set

    script = (
        "const { flag, modeIsOff } = require(process.argv[1]);\n"
        "const values = JSON.parse(require('node:fs').readFileSync(0, 'utf8'));\n"
        "console.log(JSON.stringify(values.map((v) => [flag(v),"
        " modeIsOff({ AGENT_TELEMETRY_MODE: v, AGENT_TELEMETRY_HOME: '/nonexistent' })])));\n"
    )
    proc = subprocess.run(
        [required_tool("nodejs", "node"), "-e", script, str(NODE_SHIM / "consent.js")],
        input=json.dumps(FLAG_VALUES),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    python = [
        [
            flag_set(v),
            mode_is_off({"AGENT_TELEMETRY_MODE": v, "AGENT_TELEMETRY_HOME": "/nonexistent"}),
        ]
        for v in FLAG_VALUES
    ]
    node = json.loads(proc.stdout)
    differing = [(v, p, n) for v, p, n in zip(FLAG_VALUES, python, node, strict=True) if p != n]
    assert not differing
