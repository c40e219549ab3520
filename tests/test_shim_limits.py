"""Both shims against the real daemon: what the daemon would refuse, the shim refuses and
counts, and what the daemon takes, the shim sends."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

import pytest

from agent_telemetry._consent import mode_is_off
from agent_telemetry._settings import flag_set
from agent_telemetryd.config_values import parse_flag
from tests.conftest import DaemonFactory
from tests.test_shim_node import NODE_SHIM
from tests.tools import required_tool

# Refused first, so that the events after them carry the drop counts to the daemon.
REFUSED: list[tuple[str, dict[str, Any]]] = [
    ("keys.flat", {f"k{i}": i for i in range(300)}),
    ("keys.nested", {"items": [{"i": i} for i in range(300)]}),  # 301 keys in all
    ("😀" * 201, {}),  # 201 characters
]
KEPT: list[tuple[str, dict[str, Any]]] = [
    ("keys.flat.limit", {f"k{i}": i for i in range(256)}),
    ("keys.nested.limit", {"items": [{"i": i} for i in range(255)]}),  # 256 keys in all
    ("😀" * 150, {"emoji": True}),  # 150 characters, 300 UTF-16 units
]

PYTHON_AGENT = """
import json, sys
from agent_telemetry import flush, stats, track
for name, properties in json.loads(sys.argv[1]):
    track(name, properties)
print(json.dumps({"flushed": flush(10), "stats": stats()}))
"""

NODE_AGENT = """
const shim = require(process.argv[1]);
for (const [name, properties] of JSON.parse(process.argv[2])) shim.track(name, properties);
shim.flush(10000).then((flushed) => console.log(JSON.stringify({ flushed, stats: shim.stats() })));
"""


def _run(command: list[str], env: dict[str, str]) -> dict[str, Any]:
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def test_both_shims_refuse_and_count_what_the_daemon_would_reject(
    daemon_factory: DaemonFactory,
) -> None:
    daemon = daemon_factory({"AGENT_TELEMETRY_RATE_LIMIT": "off"})
    events = json.dumps(REFUSED + KEPT)
    node = required_tool("nodejs", "node")
    results = {
        "python": _run([sys.executable, "-c", PYTHON_AGENT, events], daemon.env),
        "node": _run([node, "-e", NODE_AGENT, str(NODE_SHIM / "index.js"), events], daemon.env),
    }
    for shim, result in results.items():
        assert result["flushed"] is True, shim
        assert result["stats"]["drops"]["invalid"] == len(REFUSED), (shim, result)
        assert result["stats"]["sent"] == len(KEPT), (shim, result)

    expected = sorted([name for name, _ in KEPT] * 2)
    deadline = time.monotonic() + 20
    stored: list[str] = []
    counters: dict[str, Any] = {}
    while time.monotonic() < deadline:
        stored = sorted(event["event"] for event in daemon.export())
        counters = daemon.status()["counters"]
        reported = counters["dropped_by_reason"].get("client_invalid", 0)
        if stored == expected and reported == 2 * len(REFUSED):
            break
        time.sleep(0.1)
    assert stored == expected
    # Nothing reached the daemon only to be turned away there, seen by no one but a counter:
    # the user sees the agents' own losses, by reason.
    assert counters["rejected"] == 0
    assert counters["dropped_by_reason"]["client_invalid"] == 2 * len(REFUSED)


FLAG_VALUES = [
    "",
    "0",
    "false",
    "no",
    "off",
    " OFF ",
    "1",
    "true",
    "yes",
    "on",
    "y",
    "2",
    "enabled",
]


@pytest.mark.parametrize("value", FLAG_VALUES)
def test_the_shim_and_the_daemon_read_agent_telemetry_disabled_alike(value: str) -> None:
    """Whether the shim is a no-op, whether it may spool, and whether the daemon is off."""
    env = {"AGENT_TELEMETRY_DISABLED": value, "AGENT_TELEMETRY_HOME": "/nonexistent-at-home"}
    assert flag_set(value) is mode_is_off(env) is parse_flag(value)
