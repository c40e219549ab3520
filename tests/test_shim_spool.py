"""The Python shim's spool: what the daemon cannot take waits on disk, privately, bounded.

Agents run as subprocesses with no daemon (or none that reads); the spool folder is
`<home>/data/spool/`, where the daemon will look for it.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent_telemetry._consent import mode_is_off
from tests.shim_agents import Spooled, last_json, make_home, run_agent, start_agent


@pytest.fixture
def home() -> Iterator[Path]:
    path = make_home()
    yield path
    shutil.rmtree(path, ignore_errors=True)


BURST = """
from agent_telemetry import track
for i in range(2_000):
    track("agent.step", {"i": i})
"""


def test_spool_folder_is_private_and_its_file_is_renamed_into_place_when_complete(
    home: Path,
) -> None:
    proc = start_agent(
        """
import json, sys, time
from agent_telemetry import track, stats
for i in range(500):
    track("agent.step", {"i": i})
deadline = time.monotonic() + 10
while stats()["queued"] and time.monotonic() < deadline:  # the writer finds no daemon
    time.sleep(0.01)
print(json.dumps(stats()), flush=True)
sys.stdin.readline()
""",
        home,
    )
    assert proc.stdout is not None and proc.stdin is not None
    ready, _, _ = select.select([proc.stdout], [], [], 30)
    assert ready
    during = json.loads(proc.stdout.readline())
    assert during["spooled"] == 500
    # While the agent runs, its file has a temporary name: a reader never sees half of it.
    spooled = Spooled(home)
    assert spooled.sealed == []
    (temporary,) = spooled.temporary
    assert temporary.name.startswith(f".{proc.pid}-")
    assert stat.S_IMODE(temporary.stat().st_mode) == 0o600
    assert stat.S_IMODE(spooled.folder.stat().st_mode) == 0o700
    assert stat.S_IMODE(spooled.folder.parent.stat().st_mode) == 0o700  # the data dir
    proc.stdin.write("exit\n")
    proc.stdin.flush()
    assert proc.wait(timeout=30) == 0
    spooled = Spooled(home)
    assert spooled.temporary == []
    (sealed,) = spooled.sealed
    assert sealed.name == temporary.name[1:].replace(".tmp", ".ndjson")
    assert stat.S_IMODE(sealed.stat().st_mode) == 0o600
    assert sorted(e["properties"]["i"] for e in spooled.events) == list(range(500))


def test_each_spooled_line_is_exactly_a_wire_line(home: Path) -> None:
    run_agent(
        home,
        """
        from agent_telemetry import span, track
        track("agent.step", {"text": "naïve ☃", "n": 1.5}, agent="planner")
        with span("agent.run", {"task": "t"}):
            pass
        """,
    )
    (sealed,) = Spooled(home).sealed
    raw = sealed.read_bytes()
    assert raw.endswith(b"\n")
    step, run = (json.loads(line) for line in raw.splitlines())
    assert list(step) == ["event", "properties", "timestamp", "uuid", "agent"]
    assert step["properties"] == {"text": "naïve ☃", "n": 1.5}
    assert "naïve ☃".encode() in raw  # UTF-8, compact, as on the socket
    assert b": " not in raw
    assert set(run) >= {"trace_id", "span_id"} and "parent_span_id" not in run


@pytest.mark.parametrize(
    "setting",
    ["environment", "stored choice", "config file", "disabled"],
)
def test_mode_off_leaves_no_file_under_the_data_dir(home: Path, setting: str) -> None:
    env: dict[str, str] = {}
    if setting == "environment":
        env["AGENT_TELEMETRY_MODE"] = "off"
    elif setting == "stored choice":
        (home / "consent.json").write_text(json.dumps({"mode": "off", "since": "x"}))
    elif setting == "config file":
        (home / "config.toml").write_text('mode = "off"\n')
    else:
        env["AGENT_TELEMETRY_DISABLED"] = "1"
    out = run_agent(
        home,
        BURST
        + """
import json, time
from agent_telemetry import flush, stats
flush(2)
print(json.dumps(stats()))
""",
        **env,
    )
    stats = last_json(out)
    assert stats["spooled"] == 0
    if setting == "disabled":
        assert stats["drops"]["disabled"] == 2_000
    else:
        assert stats["drops"]["mode_off"] == 2_000
    assert not (home / "data").exists()


def test_a_stored_choice_wins_over_the_config_file_and_the_environment_over_both(
    home: Path,
) -> None:
    env = {"AGENT_TELEMETRY_HOME": str(home)}
    (home / "config.toml").write_text('mode = "off"\n')
    assert mode_is_off(env)
    (home / "consent.json").write_text(json.dumps({"mode": "local"}))
    assert not mode_is_off(env)
    assert mode_is_off({**env, "AGENT_TELEMETRY_MODE": "off"})
    (home / "consent.json").write_text(json.dumps({"mode": "off"}))
    assert not mode_is_off({**env, "AGENT_TELEMETRY_MODE": "upload"})
    assert mode_is_off({**env, "AGENT_TELEMETRY_DISABLED": "yes", "AGENT_TELEMETRY_MODE": "local"})
    # A stored choice that cannot be read counts as off, as the daemon reads it; an
    # unreadable config file as no choice.
    (home / "consent.json").write_text("{not json")
    assert mode_is_off(env)
    (home / "consent.json").write_text(json.dumps({"mode": "sometimes"}))
    assert mode_is_off(env)
    (home / "consent.json").unlink()
    (home / "config.toml").write_text("mode = [\n")
    assert not mode_is_off(env)
    config = home / "elsewhere.toml"
    config.write_text('mode = " OFF "\n')
    assert mode_is_off({**env, "AGENT_TELEMETRY_CONFIG": str(config)})


def test_a_spool_folder_that_is_not_the_users_is_not_written_and_the_loss_is_counted(
    home: Path,
) -> None:
    elsewhere = home / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    (home / "data").mkdir(mode=0o700)
    (home / "data" / "spool").symlink_to(elsewhere)
    out = run_agent(
        home,
        BURST
        + """
import json
from agent_telemetry import flush, stats
flush(2)
print(json.dumps(stats()))
""",
    )
    stats = last_json(out)
    assert stats["spooled"] == 0
    assert stats["drops"]["spool_failed"] == 2_000
    assert list(elsewhere.iterdir()) == []


@pytest.mark.parametrize("parent_mode", [0o755, 0o1777])
def test_folders_that_exist_are_never_changed_and_a_loose_spool_folder_is_not_used(
    home: Path, parent_mode: int
) -> None:
    """A spool folder named inside a shared folder (even /tmp) leaves that folder as it is."""
    shared = home / "shared"
    shared.mkdir()
    os.chmod(shared, parent_mode)
    loose = shared / "loose-spool"
    loose.mkdir()
    os.chmod(loose, 0o755)
    out = run_agent(
        home,
        f"""
        import json
        from agent_telemetry import configure, flush, stats, track
        configure(spool_dir={str(shared / "fresh-spool")!r})
        track("agent.step")
        flush(2)
        configure(spool_dir={str(loose)!r})
        track("agent.step")
        flush(2)
        print(json.dumps(stats()))
        """,
    )
    stats = last_json(out)
    assert stat.S_IMODE(shared.stat().st_mode) == parent_mode
    assert stat.S_IMODE(loose.stat().st_mode) == 0o755
    assert list(loose.iterdir()) == []
    assert stats["drops"]["spool_failed"] == 1
    fresh = shared / "fresh-spool"
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o700  # made here: private
    assert len([p for p in fresh.iterdir() if p.name.endswith(".ndjson")]) == 1


def test_an_exit_cut_short_still_completes_the_file_and_reports_what_it_could_not_write(
    home: Path,
) -> None:
    """With no time left at exit, what was not encoded is counted in the sealed file."""
    run_agent(
        home,
        """
        import sys
        from agent_telemetry import track
        sys.modules["agent_telemetry._exit"].EXIT_SPOOL_BUDGET = 0.0  # a machine too busy
        for i in range(20_000):
            track("agent.step", {"i": i})
        """,
    )
    spooled = Spooled(home)
    assert spooled.temporary == [] and spooled.sealed
    reported = sum(line["client_drops"].get("exit_timeout", 0) for line in spooled.control)
    assert reported > 0
    assert len(spooled.events) + reported == 20_000
