"""Nothing lost between agent and daemon: the real daemon takes what real agents spooled.

Agents are Python processes using the shim, unchanged; the daemon is down, stopped
(SIGSTOP) or killed while they run. Every event an agent tracked must end up stored once,
or counted under a `client_*` reason in `status`, and no spool file may be left behind.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import DaemonFactory
from tests.daemon_process import DaemonProcess
from tests.fakes.posthog_backend import FakePostHog
from tests.fakes.upload_helpers import posthog_env
from tests.test_daemon_ingest import post_events as post_raw
from tests.test_daemon_ingest import send_lines

AGENT = """
import sys
import agent_telemetry
worker = int(sys.argv[1])
for i in range(int(sys.argv[2])):
    agent_telemetry.track("agent.step", {"worker": worker, "i": i})
"""
QUIET = {"AGENT_TELEMETRY_RATE_LIMIT": "off"}


def run_agents(daemon: DaemonProcess, count: int, events: int, **env: str) -> list[int]:
    """`count` agent processes, each tracking `events` and exiting; returns their pids."""
    agents = [
        subprocess.Popen(
            [sys.executable, "-c", AGENT, str(worker), str(events)], env={**daemon.env, **env}
        )
        for worker in range(count)
    ]
    assert [agent.wait(120) for agent in agents] == [0] * count
    return [agent.pid for agent in agents]


def spool_files(daemon: DaemonProcess) -> list[Path]:
    folder = daemon.home / "data" / "spool"
    return sorted(folder.iterdir()) if folder.exists() else []


def client_drops(status: dict[str, Any]) -> dict[str, int]:
    reasons = status["counters"]["dropped_by_reason"]
    return {name: count for name, count in reasons.items() if name.startswith("client_")}


def wait_until_taken(daemon: DaemonProcess, expected: int, timeout: float = 60.0) -> dict:
    """Until every spool file is gone and `expected` events are stored or counted lost."""
    deadline = time.monotonic() + timeout
    while True:
        status = daemon.status()
        accounted = status["buffer"]["events"] + sum(client_drops(status).values())
        if accounted >= expected and not spool_files(daemon):
            return status
        assert time.monotonic() < deadline, (status, spool_files(daemon))
        time.sleep(0.1)


def assert_balanced(status: dict[str, Any]) -> None:
    counters = status["counters"]
    assert counters["received"] == counters["stored"] + counters["rejected"] + counters["dropped"]


def test_agents_that_ran_while_the_daemon_was_down_are_all_stored_when_it_starts(
    daemon_factory: DaemonFactory,
) -> None:
    daemon = daemon_factory(QUIET, start=False)
    pids = run_agents(daemon, 4, 2500)
    assert len(spool_files(daemon)) == 4
    daemon.start()
    status = wait_until_taken(daemon, 10_000)
    assert status["buffer"]["events"] == 10_000 and client_drops(status) == {}
    assert_balanced(status)
    rows = daemon.export()
    assert len({row["uuid"] for row in rows}) == 10_000
    assert {row["transport"] for row in rows} == {"spool"}
    assert {row["pid"] for row in rows} == set(pids)
    per_worker = sorted((r["properties"]["worker"], r["properties"]["i"]) for r in rows)
    assert per_worker == [(w, i) for w in range(4) for i in range(2500)]


@pytest.mark.timeout(300)
def test_a_stopped_daemon_loses_nothing_of_four_agents_bursting_at_their_exit(
    daemon_factory: DaemonFactory,
) -> None:
    daemon = daemon_factory(QUIET)
    assert daemon.proc is not None
    daemon.proc.send_signal(signal.SIGSTOP)
    try:
        run_agents(daemon, 4, 50_000)
    finally:
        daemon.proc.send_signal(signal.SIGCONT)
    status = wait_until_taken(daemon, 200_000, timeout=120)
    stored = status["buffer"]["events"]
    # Every event stored, or every missing one counted where the user sees it.
    assert stored + sum(client_drops(status).values()) == 200_000
    assert_balanced(status)
    rows = daemon.export()
    assert len({row["uuid"] for row in rows}) == stored == len(rows)


def test_mode_off_with_the_daemon_down_leaves_no_file_under_the_data_dir(
    daemon_factory: DaemonFactory,
) -> None:
    daemon = daemon_factory(QUIET, start=False)
    daemon.cli("mode", "off")  # stored, as a user sets it; the agents read it
    run_agents(daemon, 2, 500)
    data = daemon.home / "data"
    assert not data.exists() or list(data.rglob("*")) == []


def test_a_daemon_in_mode_off_deletes_spool_files_unread_and_counts_them(
    daemon_factory: DaemonFactory,
) -> None:
    daemon = daemon_factory(QUIET, start=False)
    run_agents(daemon, 2, 300)  # spooled before the user turned telemetry off
    assert len(spool_files(daemon)) == 2
    daemon.env["AGENT_TELEMETRY_MODE"] = "off"
    daemon.start()
    deadline = time.monotonic() + 20
    while spool_files(daemon):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    status = daemon.status()
    assert status["counters"]["dropped_by_reason"] == {"mode_off": 600}
    assert status["counters"]["received"] == 600
    assert not daemon.database.exists()  # off keeps nothing


def test_a_file_taken_just_before_a_crash_is_not_counted_twice(
    daemon_factory: DaemonFactory,
) -> None:
    daemon = daemon_factory(QUIET, start=False)
    folder = daemon.home / "data" / "spool"
    folder.mkdir(parents=True, mode=0o700)
    name = "4242-0123456789ab.ndjson"
    lines = [json.dumps({"event": "spooled", "properties": {"i": i}}) for i in range(100)]
    lines.append(json.dumps({"client_drops": {"backlog_full": 7}, "agent": "planner"}))
    content = ("\n".join(lines) + "\n").encode()
    (folder / name).write_bytes(content)
    daemon.start()
    first = wait_until_taken(daemon, 107)
    assert first["counters"]["dropped_by_reason"] == {"client_backlog_full": 7}
    daemon.stop()
    # As if the daemon had died after committing the file and before deleting it: the
    # file is back, and so is the mark committed with its last lines.
    (folder / name).write_bytes(content)
    conn = sqlite3.connect(daemon.database)
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?, '1')", ("spool_taken:4242-0123456789ab",)
    )
    conn.commit()
    conn.close()
    daemon.start()
    again = wait_until_taken(daemon, 107)
    assert again["counters"] == first["counters"]
    assert again["buffer"]["events"] == 100


def test_an_abandoned_partial_file_is_taken_and_a_live_writers_is_left(
    daemon_factory: DaemonFactory,
) -> None:
    daemon = daemon_factory(QUIET, start=False)
    folder = daemon.home / "data" / "spool"
    folder.mkdir(parents=True, mode=0o700)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead_pid = int(dead.stdout)
    killed = folder / f".{dead_pid}-00000000000a.tmp"
    lines = [json.dumps({"event": "abandoned", "properties": {"i": i}}).encode() for i in range(50)]
    # Killed mid-line: the last line is cut short.
    killed.write_bytes(b"\n".join(lines) + b'\n{"event": "torn", "prop')
    an_hour_ago = time.time() - 3600
    os.utime(killed, (an_hour_ago, an_hour_ago))
    live = folder / f".{os.getpid()}-00000000000b.tmp"
    live.write_bytes(lines[0] + b"\n")
    daemon.start()
    deadline = time.monotonic() + 20
    while killed.exists():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    status = daemon.status()
    assert status["buffer"]["events"] == 50 and status["counters"]["rejected"] == 1
    assert live.exists()


def test_a_file_left_while_the_daemon_ran_is_taken_when_an_agent_connects(
    daemon_factory: DaemonFactory,
) -> None:
    daemon = daemon_factory(QUIET)
    folder = daemon.home / "data" / "spool"
    folder.mkdir(mode=0o700, exist_ok=True)
    lines = [json.dumps({"event": "late", "properties": {"i": i}}) for i in range(30)]
    (folder / "777-00000000000c.ndjson").write_text("\n".join(lines) + "\n")
    send_lines(daemon.ingest_socket, b'{"event": "hello"}\n')  # an agent connects
    status = wait_until_taken(daemon, 31)
    assert status["buffer"]["events"] == 31


STALLED_AT_EXIT = """
import sys
import agent_telemetry
agent_telemetry.track("agent.hello", {})
assert agent_telemetry.flush(30), "the daemon did not take the first event"
print("connected", flush=True)
sys.stdin.readline()  # the daemon is stopped now
for i in range(20_000):
    agent_telemetry.track("agent.step", {"i": i})
"""


@pytest.mark.timeout(180)
def test_what_an_agent_spooled_at_its_exit_is_taken_once_its_connection_closes(
    daemon_factory: DaemonFactory,
) -> None:
    """An agent connected to a daemon that then stalls: at its exit it spools the rest and
    goes. The daemon, running again, takes that file without waiting for another agent."""
    daemon = daemon_factory(QUIET)
    assert daemon.proc is not None
    agent = subprocess.Popen(
        [sys.executable, "-c", STALLED_AT_EXIT],
        env=daemon.env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert agent.stdout is not None and agent.stdout.readline() == "connected\n"
    daemon.proc.send_signal(signal.SIGSTOP)
    try:
        agent.communicate("go\n", timeout=120)
        assert agent.returncode == 0
        assert spool_files(daemon)  # it gave up on the stopped daemon and spooled
    finally:
        daemon.proc.send_signal(signal.SIGCONT)
    # Nothing connects to ingest.sock from here on: status goes through api.sock.
    status = wait_until_taken(daemon, 20_001)
    assert status["buffer"]["events"] + sum(client_drops(status).values()) == 20_001
    assert_balanced(status)


def test_drop_count_lines_are_counted_under_client_reasons_with_the_events_around_them(
    daemon_factory: DaemonFactory,
) -> None:
    daemon = daemon_factory(QUIET)
    payload = b"".join(
        line.encode() + b"\n"
        for line in (
            json.dumps({"event": "before"}),
            json.dumps({"client_drops": {"backlog_full": 3, "too_large": 2}, "agent": "a"}),
            json.dumps({"client_drops": {"spool_full": 1, "Weird Reason!": 4, "x" * 60: 1}}),
            json.dumps({"client_drops": {"backlog_full": -1}}),  # malformed: a rejection
            json.dumps({"client_drops": {"backlog_full": 1}, "password": "hunter2"}),
            json.dumps({"event": "after"}),
        )
    )
    send_lines(daemon.ingest_socket, payload)
    deadline = time.monotonic() + 20
    while daemon.status()["counters"]["received"] < 2 + 3 + 2 + 1 + 4 + 1 + 2:
        assert time.monotonic() < deadline, daemon.status()
        time.sleep(0.05)
    status = daemon.status()
    assert client_drops(status) == {
        "client_backlog_full": 3,
        "client_too_large": 2,
        "client_spool_full": 1,
        "client_other": 5,
    }
    assert status["buffer"]["events"] == 2 and status["counters"]["rejected"] == 2
    assert_balanced(status)
    assert "hunter2" not in daemon.log() and "Weird" not in daemon.log()


def test_a_spool_folder_that_stays_wrong_is_not_logged_at_every_connection(
    daemon_factory: DaemonFactory,
) -> None:
    """Every agent's connection scans the spool folder again; one restored with another
    mode stays refused, and said so within the log's budget, not once a connection."""
    daemon = daemon_factory(QUIET)
    folder = daemon.home / "data" / "spool"
    folder.mkdir(mode=0o700, exist_ok=True)
    folder.chmod(0o755)
    started = time.monotonic()
    connections = 120
    for n in range(connections):
        send_lines(
            daemon.ingest_socket,
            json.dumps({"event": "connected", "properties": {"n": n}}).encode() + b"\n",
        )
        time.sleep(0.1)  # the scan it started is over: the next connection starts another
    deadline = time.monotonic() + 30
    while daemon.status()["buffer"]["events"] < connections:
        assert time.monotonic() < deadline, daemon.status()["counters"]
        time.sleep(0.1)
    assert daemon.stop() == 0
    minutes = math.ceil((time.monotonic() - started) / 60)
    refused = [
        json.loads(line) for line in daemon.log().splitlines() if '"spool_folder_refused"' in line
    ]
    assert 100 <= len(refused) <= 100 + minutes
    assert refused[0]["reason"] == "has mode 0755, not 0700"


def _word(number: int) -> str:
    """`number` in lowercase letters: `lost_aaab`, a short word as a reason may be."""
    letters = ""
    for _ in range(4):
        number, digit = divmod(number, 26)
        letters = chr(ord("a") + digit) + letters
    return f"lost_{letters}"


def test_drop_counts_under_words_no_shim_reports_add_no_counter_per_word(
    daemon_factory: DaemonFactory,
) -> None:
    """A client naming each loss anew (a counter in its reason, a message) would leave a
    counter per word in the buffer for good, and in every `status`."""
    daemon = daemon_factory(QUIET)
    payload = b"".join(
        json.dumps(
            {"client_drops": {_word(line * 20 + n): 1 for n in range(20)}, "agent": "a"}
        ).encode()
        + b"\n"
        for line in range(500)
    )
    send_lines(daemon.ingest_socket, payload + b'{"client_drops": {"spool_full": 3}}\n')
    deadline = time.monotonic() + 20
    while daemon.status()["counters"]["received"] < 10_003:
        assert time.monotonic() < deadline, daemon.status()["counters"]["received"]
        time.sleep(0.05)
    status = daemon.status()
    assert client_drops(status) == {"client_other": 10_000, "client_spool_full": 3}
    assert_balanced(status)
    # Restarted, the buffer's counters say the same: nothing per word was kept.
    assert daemon.stop() == 0
    assert client_drops(json.loads(daemon.cli("status", "--json").stdout)) == {
        "client_other": 10_000,
        "client_spool_full": 3,
    }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_and_wait_for_http(daemon: DaemonProcess, port: int) -> None:
    """Start without the CLI's status round trips: ready when the HTTP port answers."""
    daemon.start(wait=False)
    deadline = time.monotonic() + 30
    while True:
        assert daemon.proc is not None and daemon.proc.poll() is None, daemon.log()
        with socket.socket() as probe, contextlib.suppress(OSError):
            probe.connect(("127.0.0.1", port))
            return
        assert time.monotonic() < deadline, daemon.log()
        time.sleep(0.01)


@pytest.mark.timeout(300)
def test_kill_9_rounds_with_spooling_agents_lose_and_duplicate_nothing(
    daemon_factory: DaemonFactory,
) -> None:
    """Twenty rounds: each starts the daemon on what an agent spooled while it was dead,
    while another agent sends and acknowledged events are posted, and kills it -9 at a
    varying moment. Acknowledged and spooled events all end up stored exactly once."""
    port = _free_port()
    daemon = daemon_factory({**QUIET, "AGENT_TELEMETRY_HTTP_PORT": str(port)}, start=False)
    url = f"http://127.0.0.1:{port}"
    acknowledged: set[str] = set()
    spooled: set[tuple[int, int]] = set()
    for round_number in range(20):
        # While it is dead an agent spools all it tracks.
        agent = subprocess.run(
            [sys.executable, "-c", AGENT, str(round_number), "200"], env=daemon.env, timeout=60
        )
        assert agent.returncode == 0
        spooled.update((round_number, i) for i in range(200))
        _start_and_wait_for_http(daemon, port)
        live = subprocess.Popen(
            [sys.executable, "-c", AGENT, str(1000 + round_number), "300"], env=daemon.env
        )
        for batch in range(2):
            events = [
                {"event": "acked", "uuid": str(uuid.uuid4()), "properties": {"b": batch}}
                for _ in range(50)
            ]
            status, body = post_raw(url, events)
            assert (status, body["accepted"]) == (202, 50)
            acknowledged.update(event["uuid"] for event in events)
        time.sleep((round_number % 5) * 0.02)  # a different moment each round, not a wait
        daemon.kill()
        assert live.wait(60) == 0  # what it had not handed over when the daemon died: spooled
    daemon.start()
    status = wait_until_taken(daemon, len(spooled) + len(acknowledged))
    rows = daemon.export()
    uuids = [row["uuid"] for row in rows]
    assert len(uuids) == len(set(uuids))  # exactly once
    assert acknowledged <= set(uuids)
    steps = {
        (r["properties"]["worker"], r["properties"]["i"])
        for r in rows
        if r["event"] == "agent.step"
    }
    assert spooled <= steps
    assert_balanced(status)
    daemon.stop()
    conn = sqlite3.connect(daemon.database)
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    conn.close()
    moved_aside = [
        *daemon.database.parent.glob("*.corrupt-*"),
        *daemon.database.parent.glob("*.foreign-*"),
    ]
    assert moved_aside == []  # the buffer's own WAL was taken back after every kill


def test_events_spooled_while_local_are_not_uploaded_after_a_later_enable(
    daemon_factory: DaemonFactory,
) -> None:
    """The daemon cannot see the mode an agent tracked under: an event spooled before the
    user chose upload stays local for good, even one whose given time is later than the
    choice; one tracked after the choice is sent."""
    backend = FakePostHog().start()
    try:
        daemon = daemon_factory(posthog_env(backend.url), start=False)
        run_agents(daemon, 1, 5, AGENT_TELEMETRY_AGENT="before")  # mode local: spooled
        # Tracked while local too, with a time of its caller's from after any `enable`.
        future = "import agent_telemetry as t; t.track('e', timestamp='2030-01-01T00:00:00Z')"
        subprocess.run(
            [sys.executable, "-c", future],
            env={**daemon.env, "AGENT_TELEMETRY_AGENT": "future"},
            check=True,
            timeout=120,
        )
        daemon.cli("enable")
        since = json.loads((daemon.home / "consent.json").read_text())["since"]
        enabled_ms = int(datetime.fromisoformat(since.replace("Z", "+00:00")).timestamp()) * 1000
        while time.time() * 1000 < enabled_ms + 1000:  # the record holds whole seconds
            time.sleep(0.05)
        run_agents(daemon, 1, 3, AGENT_TELEMETRY_AGENT="after")
        assert len(spool_files(daemon)) == 3
        daemon.start()
        wait_until_taken(daemon, 9)
        states = {(row["agent"], row["upload"]) for row in daemon.export()}
        assert states == {("before", "local"), ("future", "local"), ("after", "pending")}
        assert daemon.cli("flush", "--json").returncode == 0
        assert sorted(e["properties"]["agent"] for e in backend.accepted_events()) == ["after"] * 3
    finally:
        backend.stop()


def _read_position(pid: int, path: Path) -> int | None:
    """Where the daemon is reading `path`, from its open descriptor; None when not open."""
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            if os.readlink(fd) == str(path):
                fdinfo = Path(f"/proc/{pid}/fdinfo/{fd.name}").read_text()
                return int(fdinfo.split("pos:", 1)[1].split()[0])
    return None


@pytest.mark.parametrize("mode", ["local", "off"])
def test_a_spool_file_of_gigabytes_without_a_newline_never_holds_up_other_agents(
    daemon_factory: DaemonFactory, mode: str
) -> None:
    daemon = daemon_factory({**QUIET, "AGENT_TELEMETRY_MODE": mode})
    assert daemon.proc is not None
    url = daemon.http_url()
    folder = daemon.home / "data" / "spool"
    folder.mkdir(parents=True, mode=0o700, exist_ok=True)
    junk = folder / "4343-0123456789ab.ndjson"
    size = 2 << 30
    with junk.open("wb") as file:  # sparse: no disk, and not one newline
        file.truncate(size)
    send_lines(daemon.ingest_socket, b'{"event": "hello"}\n')  # an agent connects: a scan
    deadline = time.monotonic() + 30
    while _read_position(daemon.proc.pid, junk) is None:
        assert time.monotonic() < deadline, daemon.log()
        time.sleep(0.01)
    # Another agent's events are taken (and answered) while the file is still being read.
    status, _ = post_raw(url, [{"event": "meanwhile"}])
    assert status == 202
    position = _read_position(daemon.proc.pid, junk)
    assert position is not None and position < size
