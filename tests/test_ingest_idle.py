"""ingest.sock closes a connection that stays quiet, and no event is lost for it: both
shims keep their connection open between events and reconnect when the daemon hangs up."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from tests.conftest import DaemonFactory
from tests.daemon_process import DaemonProcess, make_home
from tests.test_daemon_ingest import wait_for_rows
from tests.tools import required_tool

NODE_SHIM = Path(__file__).resolve().parent.parent / "client_shim" / "node" / "index.js"

PYTHON_AGENT = textwrap.dedent(
    """
    import json, sys
    from agent_telemetry import track, flush, stats
    track("before.quiet")
    print(json.dumps({"flushed": flush(10)}), flush=True)
    sys.stdin.readline()  # meanwhile the daemon closes the quiet connection
    for i in range(100):
        track("after.quiet", {"i": i})
    print(json.dumps({"flushed": flush(10), "stats": stats()}), flush=True)
    """
)

NODE_AGENT = textwrap.dedent(
    f"""
    const shim = require({json.dumps(str(NODE_SHIM))});
    const readline = require('readline');
    (async () => {{
      shim.track('before.quiet');
      console.log(JSON.stringify({{ flushed: await shim.flush(10000) }}));
      const lines = readline.createInterface({{ input: process.stdin }});
      await new Promise((resolve) => lines.once('line', resolve));
      lines.close();
      for (let i = 0; i < 100; i++) shim.track('after.quiet', {{ i }});
      console.log(JSON.stringify({{ flushed: await shim.flush(10000), stats: shim.stats() }}));
    }})();
    """
)


def quiet_daemon(daemon_factory: DaemonFactory) -> DaemonProcess:
    home = make_home()
    (home / "config.toml").write_text("[limits]\ningest_idle_timeout = 1\n")
    return daemon_factory({"AGENT_TELEMETRY_RATE_LIMIT": "off"}, home=home)


def wait_for_idle_close(daemon: DaemonProcess, closed: int) -> None:
    deadline = time.monotonic() + 20
    while True:
        ingest = daemon.status()["connections"]["ingest"]
        if ingest["timed_out"] >= closed and ingest["open"] == 0:
            return
        assert time.monotonic() < deadline, ingest
        time.sleep(0.05)


def run_quiet_agent(daemon: DaemonProcess, command: list[str]) -> dict:
    agent = subprocess.Popen(
        command, env=daemon.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert agent.stdin is not None and agent.stdout is not None
        assert json.loads(agent.stdout.readline()) == {"flushed": True}
        wait_for_idle_close(daemon, closed=1)
        agent.stdin.write("go\n")
        agent.stdin.flush()
        after = json.loads(agent.stdout.readline())
        assert agent.wait(30) == 0
        return after
    finally:
        agent.kill()
        agent.wait()


def stored_names(daemon: DaemonProcess) -> list[str]:
    wait_for_rows(daemon, 101)
    return sorted(row["event"] for row in daemon.export())


def test_python_shim_reconnects_after_an_idle_close_and_loses_nothing(
    daemon_factory: DaemonFactory,
) -> None:
    daemon = quiet_daemon(daemon_factory)
    after = run_quiet_agent(daemon, [sys.executable, "-c", PYTHON_AGENT])
    assert after["flushed"] is True and after["stats"]["dropped"] == 0
    assert stored_names(daemon) == ["after.quiet"] * 100 + ["before.quiet"]


def test_node_shim_reconnects_after_an_idle_close_and_loses_nothing(
    daemon_factory: DaemonFactory,
) -> None:
    daemon = quiet_daemon(daemon_factory)
    after = run_quiet_agent(daemon, [required_tool("nodejs", "node"), "-e", NODE_AGENT])
    assert after["flushed"] is True and after["stats"]["dropped"] == 0
    assert stored_names(daemon) == ["after.quiet"] * 100 + ["before.quiet"]
