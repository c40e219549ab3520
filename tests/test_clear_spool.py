"""`clear` and `forget` leave no event tracked before them to come back: what agents
spooled while the daemon was down is deleted with the buffer."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import DaemonFactory
from tests.shim_agents import agent_env
from tests.test_daemon_ingest import post_events

AGENT = "from agent_telemetry import track\nfor i in range(4): track('tracked.before', {'i': i})\n"


def _spool_with_the_daemon_down(home: Path) -> list[Path]:
    """An agent that runs while the daemon is down: its events wait in the spool."""
    subprocess.run([sys.executable, "-c", AGENT], env=agent_env(home), check=True, timeout=60)
    spooled = sorted((home / "data" / "spool").glob("*.ndjson"))
    assert spooled, "the agent spooled nothing"
    return spooled


@pytest.mark.parametrize("command", ["clear", "forget"])
@pytest.mark.parametrize("daemon_up", [False, True], ids=["daemon-down", "daemon-up"])
def test_events_spooled_before_clear_or_forget_do_not_come_back(
    daemon_factory: DaemonFactory, command: str, daemon_up: bool
) -> None:
    """Events tracked before `forget` came back at the daemon's next start, under the new
    anonymous id; after `clear`, the user's cleared data came back the same way."""
    daemon = daemon_factory({"AGENT_TELEMETRY_RATE_LIMIT": "off"})
    post_events(daemon.http_url(), [{"event": "stored.before"}])
    old_id = daemon.status()["anonymous_id"]
    daemon.stop()
    spooled = _spool_with_the_daemon_down(daemon.home)
    if daemon_up:
        # A running daemon takes spool files at start and when an agent connects: these
        # are put back after its start, as an agent whose handover failed leaves them.
        held = [(path, path.read_bytes()) for path in spooled]
        daemon.start()
        daemon.cli("clear", "--yes")
        for path, data in held:
            path.write_bytes(data)
            path.chmod(0o600)
    daemon.cli(command, "--yes")
    assert not [path for path in spooled if path.exists()], "the spool files were kept"
    daemon.stop()
    daemon.start()  # the start's intake finds nothing from before
    status = daemon.status()
    assert status["buffer"]["events"] == 0 and daemon.export() == []
    if command == "forget":
        assert status["anonymous_id"] != old_id
