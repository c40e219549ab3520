"""The daemon as a user meets it: one per user, private sockets, clean stops and restarts."""

from __future__ import annotations

import csv
import io
import json
import signal
import socket
import sqlite3
import stat
import urllib.request
from pathlib import Path

from tests.conftest import DaemonFactory
from tests.daemon_process import DaemonProcess
from tests.test_daemon_ingest import post_events, send_lines, wait_for_rows
from tests.test_http_hostile import wait_for_counters
from tests.test_tcp_peers import OTHER_UID, as_other_user


def mode_bits(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_sockets_and_buffer_files_are_private_to_the_user(daemon: DaemonProcess) -> None:
    post_events(daemon.http_url(), [{"event": "private"}])
    assert mode_bits(daemon.ingest_socket.parent) == 0o700
    assert mode_bits(daemon.ingest_socket) == 0o600
    assert mode_bits(daemon.api_socket) == 0o600
    # The WAL holds event contents too, and SQLite creates it with the process umask.
    for path in (daemon.database, *daemon.database.parent.glob("buffer.sqlite3-*")):
        assert mode_bits(path) == 0o600, path


def test_a_home_another_user_made_in_a_shared_folder_is_refused_at_start(
    daemon_factory: DaemonFactory, shared_folder: Path
) -> None:
    """AGENT_TELEMETRY_HOME=/tmp/…, which another user made first (theirs, 0777): they
    could swap or remove the buffer and the spool in it. The daemon does not start there
    (exit 3, the reason in one line) and writes nothing into it."""
    home = shared_folder / "home"
    made = as_other_user("mkdir", "-m", "777", str(home))
    assert made.returncode == 0, made.stderr
    daemon = daemon_factory(start=False, home=home)
    daemon.log_path = shared_folder / "daemon.log"
    daemon.start(wait=False)
    assert daemon.proc is not None and daemon.proc.wait(30) == 3
    assert (
        f"another user could replace the buffer in {home / 'data'}: {home} belongs to uid "
        f"{OTHER_UID}; keep the data in a folder of your own" in daemon.log()
    )
    assert list(home.iterdir()) == []


def test_a_home_anyone_may_write_in_is_refused_with_the_chmod_that_fixes_it(
    daemon_factory: DaemonFactory,
) -> None:
    """The user's own folder, but open to everyone (0777, as umask 000 leaves them): anyone
    could rename the data folder away and put theirs in its place. The start says which
    folder and the chmod; after it, the daemon starts."""
    daemon = daemon_factory(start=False)
    daemon.home.chmod(0o777)
    daemon.start(wait=False)
    assert daemon.proc is not None and daemon.proc.wait(30) == 3
    assert (
        f"anyone may write in {daemon.home} (mode 0777); run: chmod o-w {daemon.home}"
        in daemon.log()
    )
    daemon.home.chmod(0o775)
    daemon.start()
    assert daemon.status()["running"] is True


def test_a_second_daemon_refuses_to_start_and_names_the_first(
    daemon: DaemonProcess, daemon_factory: DaemonFactory
) -> None:
    second = daemon_factory(start=False, home=daemon.home)
    second.log_path = daemon.home / "second.log"
    second.start(wait=False)
    assert second.proc is not None
    assert second.proc.wait(15) != 0
    assert f"already running (pid {daemon.proc.pid})" in second.log()
    # The first one is untouched.
    assert daemon.status()["pid"] == daemon.proc.pid


def test_stale_sockets_from_a_killed_daemon_do_not_block_the_next_start(
    daemon: DaemonProcess,
) -> None:
    daemon.kill()
    assert daemon.ingest_socket.exists()  # left behind by SIGKILL
    daemon.start()
    send_lines(daemon.ingest_socket, b'{"event": "after.restart"}\n')
    assert wait_for_rows(daemon, 1)["buffer"]["events"] == 1


def test_sigterm_exits_zero_with_nothing_lost(daemon: DaemonProcess) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(str(daemon.ingest_socket))
        sock.sendall(b"".join(b'{"event": "before.term"}\n' for _ in range(2000)))
        assert daemon.stop(signal.SIGTERM) == 0
    assert not daemon.ingest_socket.exists() and not daemon.api_socket.exists()
    status = daemon.status()
    assert status["running"] is False
    assert status["buffer"]["events"] == 2000


def test_tcp_refuses_foreign_host_and_origin(daemon: DaemonProcess) -> None:
    url = daemon.http_url()

    def code(headers: dict[str, str]) -> int:
        request = urllib.request.Request(
            f"{url}/v1/events", data=b'{"event": "x"}', headers=headers, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status
        except urllib.error.HTTPError as error:
            return error.code

    assert code({"Host": "evil.example"}) == 403
    assert code({"Host": "evil.example:7468"}) == 403
    assert code({"Origin": "https://evil.example"}) == 403
    assert code({"Origin": "null"}) == 403
    assert code({}) == 202
    assert daemon.status()["buffer"]["events"] == 1


def test_tcp_serves_no_control_or_read_api(daemon: DaemonProcess) -> None:
    url = daemon.http_url()
    for method, path in (("GET", "/v1/status"), ("GET", "/v1/export"), ("POST", "/v1/clear")):
        request = urllib.request.Request(f"{url}{path}", method=method)
        try:
            urllib.request.urlopen(request, timeout=10)
            raise AssertionError(f"{method} {path} answered on TCP")
        except urllib.error.HTTPError as error:
            assert error.code in (404, 405)


def test_export_round_trips_in_every_format(daemon: DaemonProcess) -> None:
    sent = [
        {"event": "export.check", "properties": {"n": 1, "text": 'comma, "quote"\nline'}},
        {"event": "export.nested", "properties": {"deep": {"list": [1, 2.5, None, True]}}},
        {"event": "export.empty"},
    ]
    post_events(daemon.http_url(), sent)
    ndjson = daemon.export()
    as_json = json.loads(daemon.cli("export", "--format", "json").stdout)
    out = daemon.home / "events.csv"
    daemon.cli("export", "--format", "csv", "-o", str(out))
    as_csv = list(csv.DictReader(io.StringIO(out.read_text())))

    expected = [(e["event"], e.get("properties", {})) for e in sent]
    assert [(r["event"], r["properties"]) for r in ndjson] == expected
    assert as_json == ndjson
    assert [(r["event"], json.loads(r["properties"])) for r in as_csv] == expected
    assert [r["uuid"] for r in as_csv] == [r["uuid"] for r in ndjson]
    for row in ndjson:
        assert set(row) >= {"uuid", "event", "timestamp", "received_at", "properties", "upload"}
        assert row["upload"] == "local"


def test_read_commands_work_with_the_daemon_down(daemon: DaemonProcess) -> None:
    post_events(daemon.http_url(), [{"event": "kept"}] * 3)
    assert daemon.stop() == 0
    status = daemon.status()
    assert (status["running"], status["pid"], status["buffer"]["events"]) == (False, None, 3)
    assert [r["event"] for r in daemon.export()] == ["kept"] * 3
    assert "Deleted 3 events" in daemon.cli("clear", "--yes").stdout
    assert daemon.status()["buffer"]["events"] == 0


def test_clear_with_the_daemon_up_empties_the_buffer_and_counters(daemon: DaemonProcess) -> None:
    post_events(daemon.http_url(), [{"event": "gone"}] * 10)
    refused = daemon.cli("clear", check=False)
    assert refused.returncode != 0 and "--yes" in refused.stderr
    assert daemon.status()["buffer"]["events"] == 10
    daemon.cli("clear", "--yes")
    status = daemon.status()
    assert status["buffer"]["events"] == 0 and status["counters"]["received"] == 0
    assert daemon.export() == []


def test_mode_off_keeps_nothing_and_creates_no_buffer(daemon_factory: DaemonFactory) -> None:
    daemon = daemon_factory({"AGENT_TELEMETRY_MODE": "off"})
    post_events(daemon.http_url(), [{"event": "ignored"}] * 5)
    send_lines(daemon.ingest_socket, b'{"event": "ignored"}\n')
    wait_for_counters(daemon, received=6)  # until the socket's line is counted too
    status = daemon.status()
    assert status["mode"] == "off" and status["mode_source"] == "env"
    assert status["buffer"]["events"] == 0
    assert status["counters"]["dropped_by_reason"]["mode_off"] == 6
    assert status["counters"]["dropped"] == 6
    assert not (daemon.home / "data").exists()


def test_ci_caps_upload_unless_asked_explicitly(daemon_factory: DaemonFactory) -> None:
    home_config = {"AGENT_TELEMETRY_SENDER": "file"}
    capped = daemon_factory({**home_config, "CI": "true"})
    capped.cli("enable")
    status = capped.status()
    assert (status["mode"], status["mode_source"]) == ("local", "CI")
    explicit = daemon_factory({**home_config, "CI": "true", "AGENT_TELEMETRY_MODE": "upload"})
    status = explicit.status()
    assert (status["mode"], status["mode_source"]) == ("upload", "env")


def test_bad_config_is_one_clear_line_and_no_traceback(daemon_factory: DaemonFactory) -> None:
    daemon = daemon_factory(start=False)
    (daemon.home / "config.toml").write_text('http_host = "0.0.0.0"\n')
    result = daemon.cli("status", check=False)
    assert result.returncode == 0  # status still runs, with a warning
    assert "http_host" in result.stderr and "loopback" in result.stderr
    assert "Traceback" not in result.stderr
    daemon.start(wait=False)
    assert daemon.proc.wait(15) == 3
    assert "Traceback" not in daemon.log()

    (daemon.home / "config.toml").write_text("batch_sise = 10\n")
    result = daemon.cli("status", check=False)
    assert "batch_sise: unknown setting; did you mean batch_size?" in result.stderr


def test_a_config_with_a_secret_readable_by_others_stops_the_daemon_but_not_opting_out(
    daemon_factory: DaemonFactory,
) -> None:
    daemon = daemon_factory(start=False)
    config = daemon.home / "config.toml"
    config.write_text('[posthog]\napi_key = "phc_secret"\n')
    config.chmod(0o644)
    daemon.start(wait=False)
    assert daemon.proc is not None and daemon.proc.wait(15) != 0
    assert "chmod 600" in daemon.log() and "phc_secret" not in daemon.log()
    # The user can still look and opt out: a loud warning, not a refusal.
    for command in (["status", "--json"], ["mode", "off"], ["export"]):
        result = daemon.cli(*command, check=False)
        assert result.returncode == 0, result.stderr
        assert "Warning:" in result.stderr and "chmod 600" in result.stderr
        assert "phc_secret" not in result.stderr + result.stdout
    config.chmod(0o600)
    assert daemon.cli("status", "--json").stderr == ""


def test_a_corrupt_buffer_is_moved_aside_and_a_fresh_one_started(
    daemon_factory: DaemonFactory,
) -> None:
    daemon = daemon_factory(start=False)
    daemon.database.parent.mkdir(parents=True)
    daemon.database.write_bytes(b"this is not a database" * 100)
    daemon.start()
    post_events(daemon.http_url(), [{"event": "fresh"}])
    assert [r["event"] for r in daemon.export()] == ["fresh"]
    aside = list(daemon.database.parent.glob("buffer.sqlite3.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_bytes().startswith(b"this is not a database")
    assert "buffer_corrupt_moved_aside" in daemon.log()


def test_a_buffer_from_a_newer_version_is_one_clear_line_and_no_restart_loop(
    daemon_factory: DaemonFactory,
) -> None:
    daemon = daemon_factory()
    post_events(daemon.http_url(), [{"event": "kept"}])
    daemon.stop()
    conn = sqlite3.connect(daemon.database)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    daemon.start(wait=False)
    assert daemon.proc is not None
    # 3 is the unit's RestartPreventExitStatus: systemd does not restart into a loop.
    assert daemon.proc.wait(15) == 3
    assert "written by a newer agent-telemetry (buffer schema 99" in daemon.log()
    assert "Traceback" not in daemon.log()
    cleared = daemon.cli("clear", "--yes", check=False)
    assert cleared.returncode == 1 and "Traceback" not in cleared.stderr
    assert "written by a newer agent-telemetry (buffer schema 99" in cleared.stderr
    assert not list(daemon.database.parent.glob("*.corrupt-*"))  # the user's data stays


def test_enable_without_a_backend_says_nothing_will_be_sent(daemon: DaemonProcess) -> None:
    out = daemon.cli("enable").stdout
    assert "Mode: upload" in out and "No backend is configured" in out
    assert "agent-telemetry disable" in out  # how to go back
