"""The Python shim against a real Unix socket listener standing in for the daemon.

Process-level behaviour (exit flush, fork, a stalled or missing daemon) runs the shim in a
subprocess, as an agent would; the listener records every line per connection.
"""

from __future__ import annotations

import json
import re
import select
import shutil
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.shim_agents import Spooled, agent_env, last_json, make_home, run_agent, start_agent
from tests.shim_listener import Listener


@pytest.fixture
def home() -> Iterator[Path]:
    path = make_home()
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def listener(home: Path) -> Iterator[Listener]:
    server = Listener(home / "run" / "ingest.sock")
    yield server
    server.close()


def test_no_daemon_the_agent_spools_its_events_and_exits_normally(home: Path) -> None:
    # What the calls and the exit cost in this state is measured in bench/ (overhead).
    out = run_agent(
        home,
        """
        import json, time
        from agent_telemetry import track, stats
        for i in range(10_000):
            track("agent.step", {"i": i})
        deadline = time.monotonic() + 20
        while stats()["connect_failures"] == 0 and time.monotonic() < deadline:
            time.sleep(0.01)  # until the writer has found that nobody is listening
        print(json.dumps({"stats": stats()}))
        """,
    )
    during = last_json(out)["stats"]
    assert during["sent"] == 0
    assert during["connected"] is False
    assert during["queued"] + during["spooled"] == 10_000
    spooled = Spooled(home)
    assert spooled.temporary == []
    assert len(spooled.sealed) == 1
    assert re.fullmatch(r"\d+-[0-9a-f]{12}\.ndjson", spooled.sealed[0].name)
    assert sorted(e["properties"]["i"] for e in spooled.events) == list(range(10_000))
    assert len({e["uuid"] for e in spooled.events}) == 10_000
    assert {e["agent"] for e in spooled.events} == {"agent_script"}
    assert spooled.control == []  # nothing was lost


def test_burst_then_normal_exit_delivers_every_event(home: Path, listener: Listener) -> None:
    run_agent(
        home,
        """
        from agent_telemetry import track
        for i in range(5_000):
            track("agent.step", {"i": i, "ok": True})
        """,
    )
    assert listener.wait_for(5_000, timeout=5)
    assert listener.settled()  # the agent has exited: nothing more can arrive
    events = listener.events()
    assert len(events) == 5_000
    assert sorted(e["properties"]["i"] for e in events) == list(range(5_000))
    assert len({e["uuid"] for e in events}) == 5_000
    for e in events[:50]:
        assert set(e) == {"event", "properties", "timestamp", "uuid", "agent"}
        assert e["agent"] == "agent_script"  # the program's name, without .py
        assert e["timestamp"].endswith("Z") and len(e["timestamp"]) == 24
        assert uuid.UUID(e["uuid"]).version == 7
    assert listener.torn == []


def test_forked_child_sends_its_own_events_on_its_own_connection(
    home: Path, listener: Listener
) -> None:
    out = run_agent(
        home,
        """
        import json, os
        from agent_telemetry import track, flush
        track("parent.before", {"pid": os.getpid()})
        flush(5)  # the parent now holds an open connection the child must not write to
        for i in range(2_000):  # still queued at fork: the parent's to send, not the child's
            track("parent.queued", {"i": i})
        pid = os.fork()
        if pid == 0:
            for i in range(1_000):
                track("child.step", {"i": i, "pid": os.getpid()})
        else:
            os.waitpid(pid, 0)
            track("parent.after", {"pid": os.getpid()})
            print(json.dumps({"parent": os.getpid(), "child": pid}))
        """,
    )
    pids = last_json(out)
    assert listener.wait_for(1 + 2_000 + 1_000 + 1, timeout=5)
    assert listener.settled()
    assert listener.torn == []
    names: dict[str, int] = {}
    for conn in listener.connections:
        events = [json.loads(line) for line in conn]
        kinds = {e["event"].split(".")[0] for e in events}
        assert len(kinds) <= 1, "parent and child lines on one connection"
        for e in events:
            names[e["event"]] = names.get(e["event"], 0) + 1
            if e["event"] == "child.step":
                assert e["properties"]["pid"] == pids["child"]
    assert names == {
        "parent.before": 1,
        "parent.queued": 2_000,
        "child.step": 1_000,
        "parent.after": 1,
    }


def test_multiprocessing_fork_child_is_flushed_at_its_exit(home: Path, listener: Listener) -> None:
    run_agent(
        home,
        """
        import multiprocessing, os
        from agent_telemetry import track

        def work(n):
            for i in range(n):
                track("worker.step", {"i": i, "pid": os.getpid()})

        if __name__ == "__main__":
            ctx = multiprocessing.get_context("fork")
            procs = [ctx.Process(target=work, args=(500,)) for _ in range(3)]
            for p in procs:
                p.start()
            for p in procs:
                p.join()
        """,
    )
    assert listener.wait_for(1_500, timeout=5)
    assert listener.settled()
    events = listener.events()
    assert len(events) == 1_500
    assert len({e["properties"]["pid"] for e in events}) == 3


def test_stalled_daemon_never_blocks_track_counts_drops_and_never_tears_a_line(
    home: Path,
) -> None:
    stalled = Listener(home / "run" / "ingest.sock", reading=False)
    try:
        proc = start_agent(STALLED_AGENT, home)
        # The listener reads nothing until the agent has printed: a track() that waited
        # for the socket would never get there.
        ready, _, _ = select.select([proc.stdout], [], [], 60)
        assert ready, "the agent did not finish its calls: track() blocked on a full socket"
        during = json.loads(proc.stdout.readline())
        stalled.reading.set()  # the daemon catches up
        proc.stdin.write("go\n")
        proc.stdin.flush()
        after = json.loads(proc.stdout.readline())
        proc.wait(timeout=10)
        assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""
    finally:
        stalled.close()

    calls = 200_000
    stats = during["stats"]
    # A tight loop outruns the writer: past the queue's cap the oldest calls were dropped
    # before they could be encoded (memory stays bounded), and counted.
    assert stats["dropped"] > 0
    assert stats["drops"]["backlog_full"] == stats["dropped"]
    assert stats["sent"] + stats["spooled"] + stats["dropped"] + stats["queued"] == calls
    assert after["flushed"] is True
    lines = stalled.lines
    # Every line that reached the daemon is whole and valid, and is counted as sent.
    assert len(lines) == after["stats"]["sent"]
    assert stalled.torn == []
    assert after["stats"]["sent"] + after["stats"]["spooled"] + after["stats"]["dropped"] == calls
    # The daemon was told about every loss, on the connection.
    assert stalled.client_drops() == {"backlog_full": after["stats"]["dropped"]}
    # Socket and spool together hold every other event once.
    spooled = Spooled(home)
    assert len(spooled.events) == after["stats"]["spooled"]
    uuids = {json.loads(line)["uuid"] for line in lines} | {e["uuid"] for e in spooled.events}
    assert len(uuids) == calls - after["stats"]["dropped"]


def test_what_a_stalled_daemon_did_not_take_by_exit_is_in_the_spool_once(home: Path) -> None:
    """The in-memory backlog overflows to the spool, and at exit the rest goes there too."""
    stalled = Listener(home / "run" / "ingest.sock", reading=False)
    try:
        run_agent(
            home,
            """
            import time
            from agent_telemetry import track
            for i in range(60_000):  # about 14 MB of lines: more than the 8 MiB kept in memory
                track("agent.step", {"i": i, "pad": "p" * 100})
                if i % 1000 == 999:
                    time.sleep(0.002)  # an agent doing work between events
            """,
        )
        spooled = Spooled(home)  # complete before the daemon reads a byte
        stalled.reading.set()
        assert stalled.wait_closed()
        socket_events = stalled.events()
    finally:
        stalled.close()
    assert spooled.temporary == [] and len(spooled.sealed) >= 1
    assert spooled.events, "nothing overflowed to the spool"
    lost = sum(sum(line["client_drops"].values()) for line in spooled.control)
    seen = [e["properties"]["i"] for e in socket_events + spooled.events]
    # Every event is on the socket or in the spool, once; or reported lost.
    assert len(seen) == len(set(seen)) == 60_000 - lost
    # A line cut short on the socket at exit is whole in the spool. The cut may fall
    # anywhere in it, even within its first bytes.
    head = b'{"event"'
    for torn in stalled.torn:
        assert torn[: len(head)] == head[: len(torn)] and not torn.endswith(b"}")


STALLED_AGENT = """
import json, sys, time
from agent_telemetry import track, stats, flush
for i in range(200_000):
    track("agent.step", {"i": i, "note": "x" * 40})
deadline = time.monotonic() + 30
while stats()["dropped"] == 0 and time.monotonic() < deadline:
    time.sleep(0.01)  # until the writer, stuck on the full socket, caps its backlog
print(json.dumps({"stats": stats()}))
sys.stdin.readline()
ok = flush(10)
print(json.dumps({"flushed": ok, "stats": stats()}))
"""


def test_daemon_started_after_the_events_finds_them_spooled_when_the_agent_connects(
    home: Path,
) -> None:
    proc = start_agent(LATE_AGENT, home)
    before = json.loads(proc.stdout.readline())
    assert before["sent"] == 0 and before["queued"] + before["spooled"] == 300
    late = Listener(home / "run" / "ingest.sock")
    try:
        proc.stdin.write("go\n")
        proc.stdin.flush()
        after = json.loads(proc.stdout.readline())
        # Still running: the spool file was completed when the agent reached the daemon
        # (by the writer's own retries: nobody called flush()), for the daemon to read.
        assert after["connected"] is True
        spooled = Spooled(home)
        assert spooled.temporary == []
        assert after["spool_files"] == len(spooled.sealed) == 1
        assert late.wait_for(after["sent"], timeout=2)
        arrived = [e["properties"]["i"] for e in late.events() + spooled.events]
        assert sorted(arrived) == list(range(300))
        proc.stdin.write("go\n")
        proc.stdin.flush()
        proc.wait(timeout=10)
    finally:
        late.close()


LATE_AGENT = """
import json, sys, time
from agent_telemetry import track, stats
for i in range(300):
    track("agent.step", {"i": i})
deadline = time.monotonic() + 20
while stats()["connect_failures"] < 3 and time.monotonic() < deadline:
    time.sleep(0.01)  # until a few reconnect attempts have failed
print(json.dumps(stats()))
sys.stdin.readline()
deadline = time.monotonic() + 8  # more than the longest backoff (5 s)
while not (stats()["connected"] and stats()["queued"] == 0) and time.monotonic() < deadline:
    time.sleep(0.05)
print(json.dumps(stats()))
sys.stdin.readline()
"""


def test_daemon_restart_loses_nothing_sent_after_it(home: Path) -> None:
    path = home / "run" / "ingest.sock"
    first = Listener(path)
    proc = start_agent(RESTART_AGENT, home)
    assert json.loads(proc.stdout.readline())["flushed"] is True
    assert first.wait_for(100, timeout=2)
    first.close()
    second = Listener(path)
    try:
        proc.stdin.write("go\n")
        proc.stdin.flush()
        assert json.loads(proc.stdout.readline())["flushed"] is True
        proc.wait(timeout=10)
        assert second.wait_for(100, timeout=2)
        assert sorted(e["properties"]["i"] for e in second.events()) == list(range(100, 200))
        assert second.torn == []
    finally:
        second.close()


RESTART_AGENT = """
import json, sys
from agent_telemetry import track, flush
for i in range(100):
    track("agent.step", {"i": i})
print(json.dumps({"flushed": flush(5)}))
sys.stdin.readline()
for i in range(100, 200):
    track("agent.step", {"i": i})
print(json.dumps({"flushed": flush(5)}))
"""


@pytest.mark.parametrize("value", ["1", "y", "2", "enabled"])
def test_disabled_sends_nothing(home: Path, listener: Listener, value: str) -> None:
    """Any value but empty, 0, false, no or off: the rule the daemon reads it by."""
    out = run_agent(
        home,
        """
        import json
        from agent_telemetry import track, flush, stats
        for i in range(100):
            track("agent.step", {"i": i})
        print(json.dumps({"flushed": flush(1), "stats": stats()}))
        """,
        AGENT_TELEMETRY_DISABLED=value,
    )
    result = last_json(out)
    assert listener.settled()  # the agent has exited: a connection it made would be here
    assert listener.connections == []
    assert result["stats"]["disabled"] is True
    assert result["stats"]["drops"]["disabled"] == 100
    assert result["stats"]["sent"] == 0


def test_bad_input_is_dropped_and_counted_never_raised(home: Path, listener: Listener) -> None:
    out = run_agent(
        home,
        """
        import json
        from agent_telemetry import track, flush, stats
        track(123)
        track(None, {"a": 1})
        track("", {})
        track("bad\\nname")
        track("agent.step", {"f": object()})
        track("agent.step", {"n": float("nan")})
        track("agent.step", [1, 2, 3])
        track("agent.step", {"a": 1}, colour="red")
        track("agent.step", {"a": 1}, timestamp="yesterday")
        track("agent.step", {"a": 1}, uuid="not-a-uuid")
        track("agent.step", {"x": "y" * 70_000})
        track("agent.step", {"x": "y" * 40_000})  # over the daemon's 32 KiB of properties
        track("agent.step", {1: "a", "1": "b"})  # JSON would repeat the key "1"
        track("agent.step", {"a": 1}, timestamp="0001-01-02T00:00:00Z")  # before 1970
        track("agent.ok", {"a": 1}, agent="planner", timestamp="2026-11-24T22:00:00.5+01:00")
        print(json.dumps({"flushed": flush(5), "stats": stats()}))
        """,
    )
    result = last_json(out)
    assert result["flushed"] is True
    assert result["stats"]["drops"]["invalid"] == 12
    assert result["stats"]["drops"]["too_large"] == 2
    assert result["stats"]["sent"] == 1
    assert listener.wait_for(1)
    assert listener.settled()
    # The daemon is told what the agent lost, with the agent's name, once.
    assert listener.control_lines == [
        {"client_drops": {"invalid": 12, "too_large": 2}, "agent": "agent_script"}
    ]
    (event,) = listener.events()
    assert event["event"] == "agent.ok"
    assert event["agent"] == "planner"
    assert event["timestamp"] == "2026-11-24T21:00:00.500Z"


def test_agent_name_comes_from_the_environment(home: Path, listener: Listener) -> None:
    run_agent(
        home,
        """
        from agent_telemetry import track
        track("agent.step")
        """,
        AGENT_TELEMETRY_AGENT="planner",
    )
    assert listener.wait_for(1)
    (event,) = listener.events()
    assert event["agent"] == "planner"
    assert "properties" not in event


def test_daemon_dying_mid_write_leaves_no_torn_line_at_the_next_one(home: Path) -> None:
    path = home / "run" / "ingest.sock"
    stalled = Listener(path, reading=False)
    proc = start_agent(MID_WRITE_AGENT, home)
    before = json.loads(proc.stdout.readline())
    assert before["queued"] > 0  # the socket is full: a chunk is half written
    stalled.close()
    fresh = Listener(path)
    try:
        proc.stdin.write("go\n")
        proc.stdin.flush()
        after = json.loads(proc.stdout.readline())
        proc.wait(timeout=10)
        assert after["flushed"] is True
        assert fresh.wait_for(1, timeout=2)
        assert fresh.settled()  # the agent has exited: all it resent is here
        lines = fresh.lines
        assert lines, "nothing resent after the daemon came back"
        for line in lines:
            assert json.loads(line)["event"] == "agent.step"
        assert fresh.torn == []
    finally:
        fresh.close()


MID_WRITE_AGENT = """
import json, sys, time
from agent_telemetry import track, stats, flush
for i in range(20_000):
    track("agent.step", {"i": i, "pad": "p" * 30})
# Until the writer is connected and has written some lines with more to go: the listener
# never reads, and 20,000 lines (about 1.5 MB) are far more than a Unix socket buffers,
# so from then on it sits on a full socket, part of a chunk written.
deadline = time.monotonic() + 20
while time.monotonic() < deadline:
    now = stats()
    if now["connected"] and now["sent"] > 0 and now["queued"] > 0:
        break
    time.sleep(0.01)
print(json.dumps(stats()))
sys.stdin.readline()
print(json.dumps({"flushed": flush(5), "stats": stats()}))
"""


def test_a_signal_handler_tracking_while_the_writer_starts_never_starts_a_second_one(
    home: Path, listener: Listener
) -> None:
    """track() from a signal handler during the first track() must not start a second writer.

    Two writers would share one connection and one chunk: torn lines, duplicates, losses.
    """
    out = run_agent(home, SIGNAL_AGENT, timeout=60)
    result = last_json(out)
    assert result["handler_calls"] > 0
    assert result["extra_writers"] == 0
    assert result["flushed"] is True
    assert listener.wait_for(result["sent"], timeout=5)
    assert listener.settled()
    lines = listener.lines
    assert listener.torn == []
    events = [json.loads(line) for line in lines]  # every line whole
    assert len(events) == result["sent"] == result["tracked"] - result["dropped"]
    assert len({e["uuid"] for e in events}) == len(events)
    assert sum(e["event"] == "bulk" for e in events) == 40 * 200


SIGNAL_AGENT = """
import _thread, json, signal
from agent_telemetry._client import Client
from agent_telemetry._paths import ingest_socket_path

def writers():
    # Threads this process started: the writers are bare threads (not in
    # threading.enumerate()), and nothing else here starts one.
    return _thread._count()

handler_calls = 0
clients = []
for k in range(40):  # each Client starts its own writer on its first track()
    client = Client()
    client.configure(socket_path=ingest_socket_path())

    def handler(signum, frame, client=client):
        global handler_calls
        handler_calls += 1
        client.track("from.handler", {"n": handler_calls})

    signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, 0.00005, 0.00005)
    client.track("first", {"k": k})
    signal.setitimer(signal.ITIMER_REAL, 0)
    for i in range(200):
        client.track("bulk", {"k": k, "i": i, "pad": "x" * 200})
    clients.append(client)
flushed = all(c.flush(10) for c in clients)  # so every writer started is running
print(json.dumps({
    "extra_writers": writers() - len(clients),
    "handler_calls": handler_calls,
    "flushed": flushed,
    "tracked": 40 * 201 + handler_calls,
    "sent": sum(c.stats()["sent"] for c in clients),
    "dropped": sum(c.stats()["dropped"] for c in clients),
}))
"""


def test_caller_code_run_while_encoding_may_call_stats_and_flush(
    home: Path, listener: Listener
) -> None:
    """A mapping whose items() calls stats() or flush() runs on the writer: no deadlock."""
    out = run_agent(
        home,
        """
        import json, logging, time
        from agent_telemetry import track, flush, stats

        class StatsHandler(logging.Handler):  # e.g. a handler that attaches telemetry stats
            def emit(self, record):
                stats()

        log = logging.getLogger("attrs")
        log.addHandler(StatsHandler())

        class Attrs(dict):
            def items(self):
                log.warning("serialising attrs")
                stats()
                flush(0.1)  # on the writer thread: returns rather than wait for itself
                return super().items()

        track("agent.step", {"attrs": Attrs(k=1)})
        ok = flush(0.5)
        print(json.dumps({"flushed": ok, "stats": stats()}))
        """,
        timeout=20,  # the hang guard: before the fix this never returned
    )
    result = last_json(out)
    assert result["flushed"] is True
    assert result["stats"]["sent"] == 1
    assert listener.wait_for(1)
    assert listener.events()[0]["properties"] == {"attrs": {"k": 1}}


@pytest.mark.parametrize("agent_home", ["~nosuchuser-at/x", "relative/home"])
def test_import_never_raises_when_the_socket_path_cannot_be_worked_out(
    home: Path, agent_home: str
) -> None:
    """An unknown user's ~, or a relative home in a deleted working directory: no socket."""
    gone = home / "gone"
    gone.mkdir()
    script = home / "agent_script.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import json, os
            os.chdir({str(gone)!r})
            os.rmdir({str(gone)!r})  # the working directory no longer exists
            from agent_telemetry import flush, stats, track
            track("agent.step", {{"i": 1}})
            track("agent.step", {{"i": 2}})
            print(json.dumps({{"flushed": flush(0.2), "stats": stats()}}))
            """
        )
    )
    env = agent_env(home)
    env["AGENT_TELEMETRY_HOME"] = agent_home
    proc = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    stats = last_json(proc.stdout)["stats"]
    assert stats["socket_path"] is None
    assert stats["drops"]["no_socket_path"] == 2
    assert stats["dropped"] == 2 and stats["queued"] == 0


def test_big_events_are_held_to_the_backlog_and_spool_caps_while_the_daemon_is_down(
    home: Path,
) -> None:
    """Events of 30 KB each: at most about 8 MiB waits in memory and 64 MiB in the spool."""
    out = run_agent(
        home,
        """
        import json, os, resource, time
        from agent_telemetry import track, stats
        start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        for i in range(6_000):  # 180 MB of distinct properties
            track("agent.step", {"blob": os.urandom(15_000).hex()})
        # Not what the bounds below rest on: track() caps the queue as it is called, so
        # they hold at any moment. The pause lets the writer encode part of the backlog,
        # so that its copies count in the peak too.
        time.sleep(0.5)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(json.dumps({"grew_mb": (peak - start) / 1024, "stats": stats()}))
        """,
    )
    result = last_json(out)
    stats = result["stats"]
    assert stats["drops"]["spool_full"] > 0
    assert stats["queued"] + stats["spooled"] + stats["dropped"] == 6_000
    assert result["grew_mb"] < 80, result
    spooled = Spooled(home)
    sizes = [path.stat().st_size for path in spooled.sealed]
    assert max(sizes) <= 8 * 1024 * 1024 + 4096  # a file's cap, and a drop-count line
    assert sum(sizes) <= 64 * 1024 * 1024 + 4096 * len(sizes)  # the folder's cap
    # Whatever did not fit is reported to the daemon in the spool itself.
    reported = sum(line["client_drops"].get("spool_full", 0) for line in spooled.control)
    assert reported == 6_000 - len(spooled.events) - stats["drops"]["backlog_full"]


def test_events_tracked_after_the_exit_flush_are_still_delivered(
    home: Path, listener: Listener
) -> None:
    """atexit handlers registered before the import, and logging.shutdown, run after it."""
    run_agent(
        home,
        """
        import atexit, logging

        class Closing(logging.Handler):
            def emit(self, record):
                pass

            def close(self):
                track("from.logging.close")
                super().close()

        logging.getLogger().addHandler(Closing())
        atexit.register(lambda: track("from.early.atexit"))

        from agent_telemetry import track
        track("from.main")
        """,
    )
    assert listener.wait_for(3, timeout=5)
    assert listener.settled()
    assert sorted(e["event"] for e in listener.events()) == [
        "from.early.atexit",
        "from.logging.close",
        "from.main",
    ]


FINALISER_AGENT = """
from agent_telemetry import track

class Closing:
    def __del__(self):
        track("from.finaliser", {"n": 1})
        track("bad.finaliser", {"n": float("nan")})  # refused: NaN is not JSON

closing = Closing()  # finalised while the interpreter tears the module down
track("from.main")
"""


def test_events_tracked_by_finalisers_at_interpreter_shutdown_are_delivered(
    home: Path, listener: Listener
) -> None:
    """Once the interpreter finalises the writer thread cannot run: the caller sends."""
    run_agent(home, FINALISER_AGENT)
    assert listener.wait_for(2, timeout=5)
    assert listener.settled()
    assert sorted(e["event"] for e in listener.events()) == ["from.finaliser", "from.main"]
    assert listener.client_drops() == {"invalid": 1}
    assert listener.torn == []


def test_events_tracked_by_finalisers_with_no_daemon_are_spooled_and_counted(
    home: Path,
) -> None:
    run_agent(home, FINALISER_AGENT)
    spooled = Spooled(home)
    assert spooled.temporary == []
    assert sorted(e["event"] for e in spooled.events) == ["from.finaliser", "from.main"]
    assert [line["client_drops"] for line in spooled.control] == [{"invalid": 1}]


def test_forked_children_leaving_inside_the_parents_span_do_not_end_it(
    home: Path, listener: Listener
) -> None:
    out = run_agent(
        home,
        """
        import json, os, sys
        from agent_telemetry import flush, span
        children = []
        with span("agent.run") as run:
            for _ in range(20):
                pid = os.fork()
                if pid == 0:
                    sys.exit(0)  # a worker that is done, inside the parent's open span
                children.append(pid)
            for pid in children:
                os.waitpid(pid, 0)
        print(json.dumps({"span_id": run.span_id, "flushed": flush(5)}))
        """,
    )
    result = last_json(out)
    assert result["flushed"] is True
    assert listener.wait_for(1)
    assert listener.settled()  # parent and children have exited: nothing more can come
    (event,) = listener.events()
    assert event["span_id"] == result["span_id"]
    assert "status" not in event["properties"]


def test_events_tracked_after_the_late_budget_with_no_daemon_are_counted_not_left_queued(
    home: Path,
) -> None:
    """Past the 0.5 s of late flushing a queued event would wait for a flush that never
    comes, and go with the process uncounted: it is counted as `exit_timeout` instead."""
    out = run_agent(
        home,
        """
        import atexit, json, time

        def late():  # runs after the shim's exit flush: registered before the import
            tracked = 0
            deadline = time.monotonic() + 10
            while stats()["drops"]["exit_timeout"] < 50 and time.monotonic() < deadline:
                track("late.step", {"i": tracked})
                tracked += 1
            print(json.dumps({"tracked": tracked, "stats": stats()}))

        atexit.register(late)

        from agent_telemetry import stats, track
        track("from.main")
        """,
    )
    result = last_json(out)
    stats = result["stats"]
    assert stats["drops"]["exit_timeout"] >= 50
    assert stats["queued"] == 0
    # Each event is in a spool file (the daemon takes a left .tmp too) or counted.
    folder = home / "data" / "spool"
    events = [
        json.loads(line)
        for path in folder.iterdir()
        for line in path.read_bytes().splitlines()
        if not line.startswith(b'{"client_drops"')
    ]
    late = sorted(e["properties"]["i"] for e in events if e["event"] == "late.step")
    assert late == list(range(len(late)))
    assert len(late) + stats["dropped"] == result["tracked"]
    assert stats["dropped"] == stats["drops"]["exit_timeout"]
    assert [e["event"] for e in events].count("from.main") == 1


def test_an_event_another_thread_queues_as_the_exit_flush_ends_is_spooled_not_left(
    home: Path,
) -> None:
    """Between the exit's hand-over to the spool and the switch to flushing each late call
    on the spot, another thread's track() only queues: the exit must not leave it there."""
    run_agent(
        home,
        """
        import threading
        import agent_telemetry
        from agent_telemetry import track

        client = agent_telemetry._client
        spool_rest = client._spool_rest
        go, done = threading.Event(), threading.Event()

        def other_thread():  # started now: Python 3.12 starts no thread at shutdown
            go.wait()
            track("from.other.thread")
            done.set()

        threading.Thread(target=other_thread, daemon=True).start()

        def spool_rest_then_another_thread_tracks(timeout):
            spool_rest(timeout)
            if not client._exited:  # the exit's own hand-over, not a late call's
                go.set()
                done.wait()

        client._spool_rest = spool_rest_then_another_thread_tracks
        track("from.main")
        """,
    )
    spooled = Spooled(home)  # sealed files only: a .tmp would mean nobody completed it
    assert sorted(e["event"] for e in spooled.events) == ["from.main", "from.other.thread"]
    assert spooled.control == []


@pytest.mark.parametrize("started", [False, True])
def test_a_ctrl_c_while_the_writer_starts_leaves_the_next_call_to_start_it(
    home: Path, listener: Listener, started: bool
) -> None:
    """KeyboardInterrupt is raised wherever the main thread is when Ctrl-C comes, also
    between taking the right to start the writer and the thread existing, or just after."""
    out = run_agent(
        home,
        f"""
        import _thread, json, sys, threading
        from agent_telemetry import flush, track

        client_module = sys.modules["agent_telemetry._client"]  # the package's _client is
        # the Client

        release = threading.Event()

        def held_back(function, args):  # runs once the next start has run its own thread
            release.wait()
            function(*args)

        class CtrlCOnFirstStart:
            # What _client calls to start the writer: the first start is interrupted
            # before its thread exists, or just after, as a Ctrl-C there would interrupt it.
            interrupted = False

            def __getattr__(self, name):
                return getattr(_thread, name)

            def start_new_thread(self, function, args):
                if not CtrlCOnFirstStart.interrupted:
                    CtrlCOnFirstStart.interrupted = True
                    if {started}:
                        _thread.start_new_thread(held_back, (function, args))
                    raise KeyboardInterrupt
                ident = _thread.start_new_thread(function, args)
                release.set()
                return ident

        client_module._thread = CtrlCOnFirstStart()
        try:
            track("first")
        except KeyboardInterrupt:
            pass  # an agent that takes Ctrl-C as "stop this step" and goes on
        for i in range(100):
            track("after", {{"i": i}})
        print(json.dumps({{"flushed": flush(5)}}))
        """,
    )
    assert last_json(out) == {"flushed": True}
    assert listener.wait_for(101, timeout=5)
    assert listener.settled()
    assert len(listener.connections) == 1  # one writer ran, whichever call started it
    names = [e["event"] for e in listener.events()]
    assert names.count("first") == 1 and names.count("after") == 100


def test_flush_with_a_nan_or_negative_timeout_returns_at_once_while_the_daemon_stalls(
    home: Path,
) -> None:
    """A NaN deadline is never reached: such a flush() would wait for a stalled daemon
    forever (a timeout worked out from a clock or a setting that went wrong)."""
    stalled = Listener(home / "run" / "ingest.sock", reading=False)
    try:
        out = run_agent(
            home,
            """
            import json
            from agent_telemetry import flush, track
            for i in range(20_000):  # more than the socket's buffers hold
                track("agent.step", {"i": i, "pad": "x" * 500})
            results = [flush(float("nan")), flush(-1.0), flush(float("-inf"))]
            print(json.dumps(results))
            """,
        )
    finally:
        stalled.close()
    assert json.loads(out.strip().splitlines()[-1]) == [False, False, False]
