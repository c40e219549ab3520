"""End to end: events from many processes over every transport land once in the buffer."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.daemon_process import DaemonProcess

SHIM_PRODUCER = """
import sys
import agent_telemetry
worker = int(sys.argv[1])
for i in range(int(sys.argv[2])):
    agent_telemetry.track("agent.step", {"worker": worker, "i": i})
"""


def post_events(
    url: str, events: list[dict], headers: dict[str, str] | None = None
) -> tuple[int, dict]:
    request = urllib.request.Request(
        f"{url}/v1/events",
        data=json.dumps({"events": events}).encode(),
        headers={"Content-Type": "application/json", **(headers or {})},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def send_lines(path: Path, payload: bytes) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(str(path))
        sock.sendall(payload)


def wait_for_rows(daemon: DaemonProcess, expected: int, timeout: float = 90.0) -> dict:
    """Until `expected` events are stored; a deadline only for a daemon that never gets
    there (a loaded machine may take its time: spooled events come in after the agents)."""
    deadline = time.monotonic() + timeout
    status = daemon.status()
    while status["buffer"]["events"] < expected and time.monotonic() < deadline:
        time.sleep(0.1)
        status = daemon.status()
    return status


def test_four_shim_processes_and_http_store_every_event_exactly_once(daemon: DaemonProcess) -> None:
    producers = [
        subprocess.Popen([sys.executable, "-c", SHIM_PRODUCER, str(worker), "5000"], env=daemon.env)
        for worker in range(4)
    ]
    url = daemon.http_url()
    for start in range(0, 1000, 250):
        status, body = post_events(
            url, [{"event": "http.step", "properties": {"i": i}} for i in range(start, start + 250)]
        )
        assert (status, body["accepted"], body["rejected"]) == (202, 250, [])
    assert [p.wait(60) for p in producers] == [0, 0, 0, 0]

    status = wait_for_rows(daemon, 21_000)
    assert status["buffer"]["events"] == 21_000
    rows = daemon.export()
    assert len({row["uuid"] for row in rows}) == 21_000
    per_worker = {w: sum(1 for r in rows if r["properties"].get("worker") == w) for w in range(4)}
    assert per_worker == {0: 5000, 1: 5000, 2: 5000, 3: 5000}

    # The same uuids again, over the socket: stored once, counted as duplicates.
    again = b"".join(
        json.dumps({"event": r["event"], "uuid": r["uuid"], "properties": r["properties"]}).encode()
        + b"\n"
        for r in rows
    )
    send_lines(daemon.ingest_socket, again)

    deadline = time.monotonic() + 20
    while daemon.status()["counters"]["dropped_by_reason"].get("duplicate", 0) < 21_000:
        assert time.monotonic() < deadline, daemon.status()
        time.sleep(0.1)
    final = daemon.status()
    assert final["buffer"]["events"] == 21_000
    counters = final["counters"]
    # A shim that gave up on a daemon slowed by the load sends a line again (from its
    # spool): kept once, and the copy or its torn first half counted, never as an error.
    resent = counters["dropped_by_reason"]["duplicate"] - 21_000
    torn = counters["dropped_by_reason"].get("torn_line", 0)
    assert counters["rejected"] == 0
    assert counters["received"] == 42_000 + resent + torn


def test_events_from_a_process_killed_right_after_writing_are_stored(
    daemon: DaemonProcess,
) -> None:
    # Writes 300 lines (the last without its newline) and SIGKILLs itself at once.
    script = f"""
import json, os, signal, socket
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect({str(daemon.ingest_socket)!r})
lines = [json.dumps({{"event": "dying.write", "properties": {{"i": i}}}}) for i in range(300)]
s.sendall(("\\n".join(lines)).encode())
os.kill(os.getpid(), signal.SIGKILL)
"""
    proc = subprocess.run([sys.executable, "-c", script], env=daemon.env, check=False)
    assert proc.returncode == -signal.SIGKILL
    status = wait_for_rows(daemon, 300)
    assert status["buffer"]["events"] == 300
    assert sorted(r["properties"]["i"] for r in daemon.export()) == list(range(300))


def test_a_line_cut_off_by_its_sender_leaving_is_counted_as_torn_not_as_bad_input(
    daemon: DaemonProcess,
) -> None:
    """A sender that goes away mid-line (a shim giving up on a stalled daemon, which then
    sends that line again from its spool): the half is counted, not shown as an error."""
    whole = json.dumps({"event": "whole", "properties": {"n": 1}}).encode()
    half = json.dumps({"event": "cut", "properties": {"n": 2}}).encode()[:17]
    send_lines(daemon.ingest_socket, whole + b"\n" + half)
    deadline = time.monotonic() + 20
    while daemon.status()["counters"]["dropped_by_reason"].get("torn_line", 0) < 1:
        assert time.monotonic() < deadline, daemon.status()
        time.sleep(0.1)
    counters = daemon.status()["counters"]
    assert (counters["received"], counters["stored"], counters["rejected"]) == (2, 1, 0)
    assert [r["event"] for r in daemon.export()] == ["whole"]


def test_acknowledged_events_survive_kill_9_of_the_daemon(daemon: DaemonProcess) -> None:
    url = daemon.http_url()
    acknowledged = []
    for batch in range(5):
        events = [{"event": "acked", "properties": {"b": batch, "i": i}} for i in range(200)]
        status, body = post_events(url, events)
        assert status == 202 and body["accepted"] == 200
        acknowledged.extend((batch, i) for i in range(200))
    daemon.kill()
    daemon.start()
    stored = {(r["properties"]["b"], r["properties"]["i"]) for r in daemon.export()}
    assert stored == set(acknowledged)


def test_hostile_lines_are_counted_and_skipped_and_valid_neighbours_kept(
    daemon: DaemonProcess,
) -> None:
    valid = [json.dumps({"event": "ok", "properties": {"n": n}}).encode() for n in range(5)]
    hostile = [
        b"{not json",
        b"\xff\xfe\xfa invalid utf-8",
        b'{"event": "' + b"x" * (1024 * 1024) + b'"}',  # 1 MiB line
        b'{"event": 42}',
        b'{"event": "ok", "properties": []}',
        # A field a newer shim might send: kept local, not refused (test_version_upgrades.py),
        # unless a known field is wrong.
        b'{"event": 7, "surprise": 1}',
        b"[1, 2, 3]",
        b'{"event": "bad\\u0000name"}',
        b'{"event": "ok", "timestamp": "yesterday"}',
    ]
    payload = b""
    for i, line in enumerate(hostile):
        payload += valid[i % 5] if i < 5 else b""
        payload += b"\n" + line + b"\n"
    payload += b'{"event": "newer", "surprise": 1}\n'
    send_lines(daemon.ingest_socket, payload)

    deadline = time.monotonic() + 10
    while daemon.status()["counters"]["rejected"] < len(hostile):
        assert time.monotonic() < deadline, daemon.status()
        time.sleep(0.05)
    status = daemon.status()
    assert status["running"] is True
    assert status["buffer"]["events"] == 6
    assert status["counters"]["rejected"] == len(hostile)
    assert status["counters"]["received"] == 6 + len(hostile)
    rows = daemon.export()
    assert sorted(r["properties"]["n"] for r in rows if r["event"] == "ok") == [0, 1, 2, 3, 4]
    assert [r["upload"] for r in rows if r["event"] == "newer"] == ["local"]
    # The reason is logged, the content never is.
    log = daemon.log()
    assert "not valid JSON" in log and "event_kept_local_unknown_fields" in log
    assert "surprise" not in log  # a field name is the client's text too
    assert "xxxxxxxx" not in log and "bad\\u0000name" not in log


def test_http_lists_rejected_events_by_index_and_keeps_the_valid_ones(
    daemon: DaemonProcess,
) -> None:
    status, body = post_events(
        daemon.http_url(),
        [
            {"event": "fine"},
            {"properties": {}},
            {"event": "also.fine", "uuid": "nope"},
            {"event": "x"},
        ],
    )
    assert status == 202
    assert body["accepted"] == 2
    assert [r["index"] for r in body["rejected"]] == [1, 2]
    assert "'event' is required" in body["rejected"][0]["reason"]
    assert "'uuid'" in body["rejected"][1]["reason"]
    status, body = post_events(daemon.http_url(), [{"nope": 1}])
    assert status == 400 and body["accepted"] == 0
    assert sorted(r["event"] for r in daemon.export()) == ["fine", "x"]


def test_agent_name_header_names_the_source(daemon: DaemonProcess) -> None:
    post_events(daemon.http_url(), [{"event": "a"}], headers={"X-Agent-Name": "planner"})
    post_events(daemon.http_url(), [{"event": "b", "agent": "coder"}])
    sources = {r["event"]: (r["agent"], r["transport"]) for r in daemon.export()}
    assert sources == {"a": ("planner", "http"), "b": ("coder", "http")}


def test_unix_events_record_the_sender_pid(daemon: DaemonProcess) -> None:
    send_lines(daemon.ingest_socket, b'{"event": "with.pid"}\n')
    wait_for_rows(daemon, 1)
    (row,) = daemon.export()
    assert row["transport"] == "unix" and row["pid"] == os.getpid()
