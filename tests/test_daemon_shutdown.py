"""Starting and stopping as a supervisor sees it: a failed start leaves nothing behind, and
a drain keeps every event it acknowledged, however many signals arrive meanwhile."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

from agent_telemetryd.lock import running_pid
from tests.conftest import DaemonFactory
from tests.daemon_process import CLI, DaemonProcess, make_home
from tests.fakes.posthog_backend import FakePostHog
from tests.fakes.upload_helpers import flush_json, posthog_env
from tests.fakes.upload_helpers import post_events as upload_post_events
from tests.test_daemon_ingest import post_events


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def log_events(daemon: DaemonProcess) -> list[str]:
    return [json.loads(line)["event"] for line in daemon.log().splitlines() if line.strip()]


def assert_failed_start_left_nothing(daemon: DaemonProcess) -> dict:
    """Exit 3 and one log line without a traceback; lock, sockets and buffer all let go."""
    assert daemon.proc is not None
    assert daemon.proc.wait(20) == 3
    lines = daemon.log().splitlines()
    assert len(lines) == 1, daemon.log()
    assert "Traceback" not in daemon.log()
    record = json.loads(lines[0])
    assert (record["event"], record["level"]) == ("startup_failed", "error")
    run = daemon.home / "run"
    assert running_pid(run / "daemon.lock") is None  # nobody holds either lock
    assert running_pid(daemon.home / "data" / "buffer.lock") is None
    assert not daemon.ingest_socket.exists() and not daemon.api_socket.exists()
    return record


def test_an_unusable_store_path_is_one_line_exit_3_and_nothing_left_open(
    daemon_factory: DaemonFactory,
) -> None:
    daemon = daemon_factory(start=False)
    (daemon.home / "data").write_text("a file where the data folder should be\n")
    daemon.start(wait=False)
    record = assert_failed_start_left_nothing(daemon)
    assert "data" in record["reason"], record
    # The lock really is free: the same home starts once the path is fixed.
    (daemon.home / "data").unlink()
    daemon.log_path = daemon.home / "second.log"
    daemon.start()
    assert daemon.status()["running"] is True


def test_a_start_failing_after_the_buffer_and_a_socket_is_one_line_exit_3_leaving_nothing(
    daemon_factory: DaemonFactory,
) -> None:
    """api.sock held by another listener (as a socket unit holds it) fails the start after
    the buffer is open and ingest.sock bound: both are let go. (A taken HTTP or OTLP port
    no longer fails it: test_tcp_peers, test_otlp_http_port, test_otlp_grpc.)"""
    daemon = daemon_factory(start=False)
    daemon.api_socket.parent.mkdir(mode=0o700, parents=True)
    with socket.socket(socket.AF_UNIX) as holder:
        holder.bind(str(daemon.api_socket))
        holder.listen()
        daemon.start(wait=False)
        assert daemon.proc is not None
        assert daemon.proc.wait(20) == 3
    daemon.api_socket.unlink()  # the holder's file, not the daemon's
    record = assert_failed_start_left_nothing(daemon)
    assert str(daemon.api_socket) in record["reason"], record
    # The buffer was opened before the sockets were bound, and closed after: SQLite removes
    # the write-ahead log only when its last connection closes cleanly.
    assert daemon.database.exists()
    assert not Path(f"{daemon.database}-wal").exists()


def test_a_home_too_deep_for_a_socket_path_is_named_so_in_the_one_line(
    daemon_factory: DaemonFactory,
) -> None:
    """A Unix socket's address holds only about a hundred bytes: a deep AGENT_TELEMETRY_HOME
    is refused with that reason and what to change, not "cannot bind …: None"."""
    home = make_home() / ("deep-" + "x" * 100)
    home.mkdir()
    try:
        daemon = daemon_factory(start=False, home=home)
        daemon.start(wait=False)
        record = assert_failed_start_left_nothing(daemon)
    finally:
        shutil.rmtree(home.parent, ignore_errors=True)
    reason = record["reason"]
    assert str(daemon.ingest_socket) in reason, record
    assert "too long for a Unix socket" in reason and "AGENT_TELEMETRY_HOME" in reason, record
    assert "None" not in reason, record


class NdjsonStreamer(threading.Thread):
    """An agent on ingest.sock writing batches until the daemon stops taking them; a batch
    counts as delivered once sendall() returned for it."""

    def __init__(self, path: Path) -> None:
        super().__init__(daemon=True)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(str(path))
        self.delivered: list[int] = []
        self.started_writing = threading.Event()

    def run(self) -> None:
        seq = 0
        try:
            while True:
                batch = list(range(seq, seq + 50))
                payload = b"".join(
                    json.dumps({"event": "ndjson.inflight", "properties": {"seq": n}}).encode()
                    + b"\n"
                    for n in batch
                )
                self.sock.sendall(payload)
                self.delivered.extend(batch)
                seq += 50
                self.started_writing.set()
                time.sleep(0.005)  # a steady agent, not a flood
        except OSError:
            pass  # the daemon stopped reading: EPIPE or a reset
        finally:
            self.sock.close()


class HttpPoster(threading.Thread):
    """An agent posting over HTTP until refused; keeps what was acknowledged with 202."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.acknowledged: list[int] = []
        self.started_posting = threading.Event()

    def run(self) -> None:
        seq = 0
        while True:
            batch = [
                {"event": "http.inflight", "properties": {"seq": n}} for n in range(seq, seq + 5)
            ]
            try:
                status, _ = post_events(self.url, batch)
            except OSError:
                return  # refused or reset: the daemon is stopping
            if status == 202:
                self.acknowledged.extend(range(seq, seq + 5))
            seq += 5
            self.started_posting.set()


def open_slow_request(daemon: DaemonProcess, events: list[dict]) -> tuple[socket.socket, bytes]:
    """A POST whose headers and first half of the body are sent; returns the rest."""
    port = int(daemon.http_url().rsplit(":", 1)[1])
    body = json.dumps({"events": events}).encode()
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    head = (
        f"POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    half = len(body) // 2
    sock.sendall(head + body[:half])
    # Accepted and inside the request before any signal: a connection still in the listen
    # queue when the listener closes is refused, which is a different story.
    wait_until(
        lambda: daemon.status()["connections"]["tcp"]["open"] >= 1, "the slow request to arrive"
    )
    return sock, body[half:]


def read_status_line(sock: socket.socket) -> str:
    data = b""
    while b"\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data.split(b"\r\n", 1)[0].decode()


def stored_seqs(daemon: DaemonProcess, event: str) -> set[int]:
    return {r["properties"]["seq"] for r in daemon.export() if r["event"] == event}


def test_a_second_sigterm_during_the_drain_does_not_cut_it_short(daemon: DaemonProcess) -> None:
    slow_events = [{"event": "slow.request", "properties": {"seq": n}} for n in range(3)]
    slow, rest = open_slow_request(daemon, slow_events)
    streamer = NdjsonStreamer(daemon.ingest_socket)
    poster = HttpPoster(daemon.http_url())
    streamer.start()
    poster.start()
    assert streamer.started_writing.wait(20) and poster.started_posting.wait(20)
    assert daemon.proc is not None

    daemon.proc.send_signal(signal.SIGTERM)
    wait_until(lambda: "daemon_stopping" in log_events(daemon), "the drain to begin")
    daemon.proc.send_signal(signal.SIGTERM)
    wait_until(lambda: "already_stopping" in log_events(daemon), "the second SIGTERM")
    assert daemon.proc.poll() is None  # still draining: the slow request holds it open
    slow.sendall(rest)
    assert read_status_line(slow) == "HTTP/1.1 202 Accepted"
    slow.close()

    assert daemon.proc.wait(30) == 0
    streamer.join(10)
    poster.join(30)
    assert not streamer.is_alive() and not poster.is_alive()
    assert stored_seqs(daemon, "slow.request") == {0, 1, 2}
    assert set(poster.acknowledged) <= stored_seqs(daemon, "http.inflight")
    assert set(streamer.delivered) <= stored_seqs(daemon, "ndjson.inflight")
    assert poster.acknowledged and streamer.delivered  # both were really in flight
    assert not daemon.ingest_socket.exists() and not daemon.api_socket.exists()
    assert "second_interrupt_cuts_drain_short" not in log_events(daemon)


def test_a_second_sigint_forces_the_exit_and_committed_events_are_intact(
    daemon: DaemonProcess,
) -> None:
    acknowledged = [{"event": "before.interrupt", "properties": {"seq": n}} for n in range(200)]
    assert post_events(daemon.http_url(), acknowledged)[0] == 202
    slow, _rest = open_slow_request(daemon, [{"event": "never.finished"}])
    assert daemon.proc is not None

    daemon.proc.send_signal(signal.SIGINT)
    wait_until(lambda: "daemon_stopping" in log_events(daemon), "the drain to begin")
    daemon.proc.send_signal(signal.SIGINT)
    # Forced: it does not wait for the slow request, whose body never comes.
    assert daemon.proc.wait(30) == 1
    slow.close()
    assert "second_interrupt_cuts_drain_short" in log_events(daemon)
    assert stored_seqs(daemon, "before.interrupt") == set(range(200))
    conn = sqlite3.connect(daemon.database)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    finally:
        conn.close()
    assert not daemon.ingest_socket.exists() and not daemon.api_socket.exists()


def test_sigterm_during_a_flush_answers_the_flush_and_loses_nothing(
    daemon_factory: DaemonFactory,
) -> None:
    """`agent-telemetry flush` waiting on a batch the backend holds when the daemon is
    stopped: the flush is told what was sent and that the daemon is stopping (not "the
    daemon did not answer"), the daemon exits 0, and the batch abandoned in flight is sent
    again after a restart, so every event reaches the backend."""
    posthog = FakePostHog().start()
    try:
        daemon = daemon_factory(
            posthog_env(posthog.url, AGENT_TELEMETRY_MODE="upload", AGENT_TELEMETRY_BATCH_SIZE="25")
        )
        uuids = upload_post_events(daemon, 60)
        posthog.hold_after = 1  # the first batch is answered; the second hangs in flight
        flushing = subprocess.Popen(
            [CLI, "flush"], env=daemon.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        assert posthog.arrived.wait(15)
        assert daemon.proc is not None
        daemon.proc.send_signal(signal.SIGTERM)
        out, err = flushing.communicate(timeout=30)
        assert daemon.proc.wait(30) == 0
        assert (flushing.returncode, err) == (0, b""), err
        assert out.decode().splitlines() == [
            "Sent 25 events in 1 batches.",
            "Stopped: the daemon is stopping.",
        ]

        posthog.hold_after = None
        posthog.hold.clear()
        posthog.release.set()
        daemon.start()
        assert flush_json(daemon)["events_sent"] == 35
        assert {e["uuid"] for e in posthog.all_sent_events()} == set(uuids)
    finally:
        posthog.stop()
