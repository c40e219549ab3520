"""The Node shim as users get it: `npm pack`, installed into a scratch project, required by
its package name, delivering to a real daemon.

npm runs offline with a cache of its own: installing a local tarball with no dependencies
needs no registry, and the user's ~/.npm is left alone.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon_process import DaemonProcess
from tests.shim_listener import Listener
from tests.tools import required_tool

NODE_SHIM = Path(__file__).resolve().parent.parent / "client_shim" / "node"
PACKAGE = json.loads((NODE_SHIM / "package.json").read_text())


@pytest.fixture(autouse=True)
def _node_and_npm() -> None:
    required_tool("nodejs", "node")
    required_tool("npm", "npm")


def npm(*args: str, cwd: Path, cache: Path) -> str:
    env = {**os.environ, "npm_config_cache": str(cache), "npm_config_update_notifier": "false"}
    result = subprocess.run(
        ["npm", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def project() -> Iterator[Path]:
    """A scratch project with the packed shim installed from its tarball."""
    root = Path(tempfile.mkdtemp(prefix="at-npm-", dir="/tmp"))
    cache = root / "npm-cache"
    packed = npm("pack", "--pack-destination", str(root), cwd=NODE_SHIM, cache=cache)
    tarball = root / packed.strip().splitlines()[-1]
    with tarfile.open(tarball) as archive:
        names = sorted(name.removeprefix("package/") for name in archive.getnames())
    # What the package ships: its files list, package.json and README; no tests.
    assert names == sorted({*PACKAGE["files"], "package.json"})
    scratch = root / "scratch"
    scratch.mkdir()
    (scratch / "package.json").write_text('{"name": "scratch", "private": true}\n')
    npm("install", "--offline", "--no-audit", "--no-fund", str(tarball), cwd=scratch, cache=cache)
    yield scratch
    shutil.rmtree(root, ignore_errors=True)


def run_node(project: Path, code: str, env: dict[str, str]) -> str:
    script = project / "agent.js"
    script.write_text(code)
    result = subprocess.run(
        ["node", str(script)], cwd=project, env=env, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_the_package_name_is_the_one_the_readmes_show(project: Path) -> None:
    name = PACKAGE["name"]
    assert name == "agent-telemetry-shim"
    installed = json.loads((project / "package.json").read_text())["dependencies"]
    assert name in installed
    for readme in (NODE_SHIM / "README.md", NODE_SHIM.parent.parent / "README.md"):
        assert f"npm install {name}" in readme.read_text()
    assert (project / "node_modules" / name / PACKAGE["types"]).exists()


def test_track_from_the_installed_package_reaches_a_real_daemon(
    project: Path, daemon: DaemonProcess
) -> None:
    run_node(
        project,
        "const { track } = require('agent-telemetry-shim');\n"
        "track('from.package', { tool: 'search', ok: true });\n",
        daemon.env,
    )
    deadline = time.monotonic() + 20
    events: list[dict] = []
    while not events and time.monotonic() < deadline:
        events = [e for e in daemon.export() if e["event"] == "from.package"]
        time.sleep(0.1)
    (event,) = events
    # The short form a shim user types is stored under its GenAI convention name.
    assert event["properties"] == {"gen_ai.tool.name": "search", "ok": True}


def test_span_from_the_installed_package_sends_the_trace_fields(project: Path) -> None:
    home = Path(tempfile.mkdtemp(prefix="at-", dir="/tmp"))
    (home / "run").mkdir(mode=0o700)
    listener = Listener(home / "run" / "ingest.sock")
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AGENT_TELEMETRY_")}
        env["AGENT_TELEMETRY_HOME"] = str(home)
        out = run_node(
            project,
            "const { span } = require('agent-telemetry-shim');\n"
            "const result = span('agent.run', { task: 't' }, () =>\n"
            "  span('tool.call', { tool: 'search' }, (s) => {\n"
            "    s.set('hits', 3);\n"
            "    return 'done';\n"
            "  }));\n"
            "console.log(result);\n",
            env,
        )
        assert out.strip() == "done"
        assert listener.wait_for(2)
        events = {e["event"]: e for e in listener.events()}
    finally:
        listener.close()
        shutil.rmtree(home, ignore_errors=True)
    run, tool = events["agent.run"], events["tool.call"]
    assert len(run["trace_id"]) == 32 and len(run["span_id"]) == 16
    assert "parent_span_id" not in run
    assert tool["trace_id"] == run["trace_id"]
    assert tool["parent_span_id"] == run["span_id"]
    assert tool["properties"]["hits"] == 3
    assert tool["properties"]["duration_ms"] >= 0
    assert tool["agent"] == "agent"  # the script's name
