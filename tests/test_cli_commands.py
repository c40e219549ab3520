"""What a user trips on at the command line: status with the daemon down, filtered export,
shell completion, --version, --env-file, and where the daemon reads its keys from."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agent_telemetryd import __version__
from tests.conftest import DaemonFactory
from tests.daemon_process import CLI, DaemonProcess
from tests.fakes.upload_helpers import post_events
from tests.test_daemon_ingest import post_events as post_json_events
from tests.test_tcp_peers import OTHER_UID


def run_cli(daemon: DaemonProcess, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, *args],
        env={**daemon.env, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


# --- status with the daemon down ---


def test_status_with_the_daemon_down_says_so_and_shows_the_configured_url(
    daemon_factory: DaemonFactory,
) -> None:
    stopped = daemon_factory({"AGENT_TELEMETRY_HTTP_PORT": "7468"}, start=False)
    result = run_cli(stopped, "status")
    assert result.returncode == 0, result.stderr
    lines = dict(line.split(":", 1) for line in result.stdout.splitlines())
    assert lines["daemon"].strip().startswith("not running")
    assert "agent-telemetry service install" in lines["daemon"]
    assert lines["http"].strip() == (
        "http://127.0.0.1:7468 (configured; the daemon is not running)"
    )


def test_status_with_the_daemon_down_and_a_malformed_buffer_still_tells_the_rest(
    daemon_factory: DaemonFactory,
) -> None:
    stopped = daemon_factory({"AGENT_TELEMETRY_MODE": "local"}, start=False)
    stopped.database.parent.mkdir(parents=True)
    stopped.database.write_bytes(b"this is not a database, only text " * 200)
    result = run_cli(stopped, "status")
    assert result.returncode == 0, result.stderr
    lines = dict(line.split(":", 1) for line in result.stdout.splitlines())
    assert lines["mode"].strip() == "local  (env: AGENT_TELEMETRY_MODE is set)"
    assert lines["sender"].strip() == "none"
    assert lines["events"].strip().startswith(f"unknown: cannot read {stopped.database}: ")
    assert lines["buffer file"].strip() == f"{stopped.database} (cannot be read)"
    assert lines["ingest"].strip() == str(stopped.ingest_socket)
    report = json.loads(run_cli(stopped, "status", "--json").stdout)
    assert report["buffer_error"].startswith(f"cannot read {stopped.database}: ")
    assert report["paths"]["database"] == str(stopped.database)


@pytest.mark.parametrize(
    ("port", "shown"),
    [
        ("off", "off (http_port = off)"),
        ("0", "a free loopback port picked at start (http_port = 0); the daemon is not running"),
    ],
)
def test_status_down_names_a_disabled_or_picked_port(
    daemon_factory: DaemonFactory, port: str, shown: str
) -> None:
    stopped = daemon_factory({"AGENT_TELEMETRY_HTTP_PORT": port}, start=False)
    out = run_cli(stopped, "status").stdout
    assert f"http:         {shown}" in out.splitlines()


def test_status_of_a_running_daemon_shows_the_url_it_listens_on(daemon: DaemonProcess) -> None:
    out = daemon.cli("status").stdout.splitlines()
    assert f"http:         {daemon.http_url()}" in out
    assert any(line.startswith("daemon:       running (pid ") for line in out)


def test_status_shows_every_state_the_stored_events_are_in(daemon: DaemonProcess) -> None:
    """Local-only events (the default mode keeps nothing else) were missing from the
    events line: "3 stored, 0 pending upload, 0 sent, 0 quarantined". The parts shown now
    add up to what is stored, running or not."""
    post_events(daemon, 3)
    expected = (
        "events:       3 stored: 0 pending upload, 0 sent, 3 local only, 0 rate limited,"
        " 0 quarantined"
    )
    assert expected in daemon.cli("status").stdout.splitlines()
    daemon.stop()
    assert expected in daemon.cli("status").stdout.splitlines()


def test_status_says_a_duplicate_is_no_loss(daemon: DaemonProcess) -> None:
    """An agent that sends a line again (at a reconnect, or its exit) has the copy counted
    among the drops; the text says what it is, so it does not read as a lost event."""
    event = {"event": "once", "uuid": "01935c1e-0000-7000-8000-000000000001"}
    post_json_events(daemon.http_url(), [event, event])
    (line,) = [line for line in daemon.cli("status").stdout.splitlines() if "dropped:" in line]
    assert line.endswith("dropped: duplicate 1 (copies of events already stored)")


# The store is about a sixth of a command's start, structlog (with the asyncio it loads)
# about a fifth: `status` and `flush` of a running daemon ask api.sock and need none of
# it (the upload timer runs `flush` every interval); the commands that read the file need
# the store, and structlog only if the store has something to log.
_LOADED_AT_EXIT = """
import atexit, json, sys
atexit.register(lambda: print(json.dumps(sorted(sys.modules)), file=sys.stderr))
sys.argv = ["agent-telemetry", *sys.argv[1:]]
from agent_telemetryd.entry import main
main()
"""


@pytest.mark.parametrize(
    ("command", "key", "answer"), [("status", "running", True), ("flush", "ok", True)]
)
def test_status_and_flush_of_a_running_daemon_load_neither_the_store_nor_structlog(
    daemon: DaemonProcess, command: str, key: str, answer: object
) -> None:
    result = subprocess.run(
        [sys.executable, "-c", _LOADED_AT_EXIT, command, "--json"],
        env=daemon.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)[key] == answer
    loaded = set(json.loads(result.stderr.splitlines()[-1]))
    assert not {m for m in loaded if m.startswith("agent_telemetryd.store")}
    assert not {"structlog", "asyncio"} & loaded


def test_export_loads_neither_structlog_nor_the_daemon_s_ingest_path(
    daemon: DaemonProcess,
) -> None:
    uuids = post_events(daemon, 3)
    result = subprocess.run(
        [sys.executable, "-c", _LOADED_AT_EXIT, "export", "--format", "ndjson"],
        env=daemon.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert sorted(json.loads(line)["uuid"] for line in result.stdout.splitlines()) == sorted(uuids)
    loaded = set(json.loads(result.stderr.splitlines()[-1]))
    daemon_side = {"agent_telemetryd.ingest", "agent_telemetryd.context"}
    assert not {"structlog", "asyncio", *daemon_side} & loaded


# A command wants only the errors of the daemon's modules, on stderr (stdout is its own
# output); structlog loads at the first log call, from whichever module makes it.
_LOGS_OF_A_COMMAND = """
from agent_telemetryd.cli.buffer_access import store_errors_to_stderr
from agent_telemetryd.upload import flush
store_errors_to_stderr()
flush.log.warning("flush_detail_for_the_journal", events=3)
flush.log.error("flush_failed", reason="backend refused")
print("the command's output")
"""


def test_a_command_shows_only_errors_of_any_module_and_on_stderr() -> None:
    result = subprocess.run(
        [sys.executable, "-c", _LOGS_OF_A_COMMAND], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "the command's output\n"
    assert result.stderr.splitlines() == ["[error] flush_failed reason='backend refused'"]


# --- export filters ---


def rfc3339(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z")


def received_ms(row: dict[str, object]) -> int:
    return int(datetime.fromisoformat(str(row["received_at"])).timestamp() * 1000)


def exported(daemon: DaemonProcess, *args: str) -> list[tuple[str, str]]:
    out = daemon.cli("export", "--format", "ndjson", *args).stdout
    rows = [json.loads(line) for line in out.splitlines()]
    return sorted((row["agent"], row["event"]) for row in rows)


def test_export_filters_by_receipt_time_agent_and_event(daemon: DaemonProcess) -> None:
    post_events(daemon, 2, name="tool.call", agent="early")
    first_batch_end = max(received_ms(row) for row in daemon.export())
    # The next events must be received in a later millisecond than the first batch.
    while int(time.time() * 1000) <= first_batch_end:
        time.sleep(0.001)
    boundary = first_batch_end + 1
    post_events(daemon, 1, name="tool.call", agent="late")
    post_events(daemon, 1, name="run.done", agent="late")

    everything = [("early", "tool.call")] * 2 + [("late", "run.done"), ("late", "tool.call")]
    assert exported(daemon) == everything
    assert exported(daemon, "--since", "24h") == everything
    assert exported(daemon, "--since", str(boundary)) == everything[2:]
    assert exported(daemon, "--since", rfc3339(boundary)) == everything[2:]
    assert exported(daemon, "--until", str(boundary)) == everything[:2]
    assert exported(daemon, "--until", "1d") == []  # until a day ago: nothing yet
    # The durations every setting takes (upload_interval = "15m"), weeks too.
    assert exported(daemon, "--since", "30m") == exported(daemon, "--since", "1w") == everything
    assert exported(daemon, "--until", "60s") == []
    assert exported(daemon, "--agent", "late", "--event", "tool.call") == [("late", "tool.call")]
    assert (
        exported(daemon, "--event", "run.done", "--event", "tool.call", "--agent", "early")
        == (everything[:2])
    )
    csv = daemon.cli("export", "--format", "csv", "--agent", "early").stdout
    assert len(csv.strip().splitlines()) == 3  # header and two rows


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "yesterday"], "--since must be a time back from now such as 24h or 7d"),
        (["--until", "2024-05-01T09:00:00"], "or an RFC 3339 time such as 2024-05-01T09:00:00Z"),
        (["--since", "1h", "--until", "2h"], "--until must be later than --since"),
        (["--since", "-5h"], "--since '-5h' is negative; a time back from now is written"),
        (["--since", "-1d"], "without a sign (1d means that long ago)"),
        (["--since", "0h"], "--since '0h' is zero; a time back from now must be greater than"),
        (["--until", "-5"], "--until '-5': epoch milliseconds cannot be negative"),
    ],
)
def test_export_bad_times_are_one_line_errors(
    daemon_factory: DaemonFactory, args: list[str], message: str
) -> None:
    stopped = daemon_factory(start=False)
    result = run_cli(stopped, "export", *args)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def test_stats_takes_the_same_times_as_export(daemon_factory: DaemonFactory) -> None:
    stopped = daemon_factory(start=False)
    assert run_cli(stopped, "stats", "models", "--since", "1w", "--json").returncode == 0
    refused = run_cli(stopped, "stats", "models", "--since", "-1d")
    assert refused.returncode == 1 and "--since '-1d' is negative" in refused.stderr


# --- completion and version ---


def completions(script: str, words: str) -> list[str]:
    """What bash offers after `words` with the completion script loaded."""
    program = (
        f"{script}\n"
        f"COMP_WORDS=({words}); COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1))\n"
        '_agent_telemetry_completion agent-telemetry; printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    bin_dir = str(Path(CLI).parent)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(
        ["bash", "-c", program], capture_output=True, text=True, env=env, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def _strict_json(text: str) -> object:
    """JSON as jq, JavaScript or Go read it: `Infinity` and `NaN` are not JSON."""

    def refuse(constant: str) -> object:
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_stats_json_stays_json_when_a_sum_overflows(daemon: DaemonProcess) -> None:
    """Two reported costs near the largest double sum to infinity: `stats --json` printed
    `Infinity`, which no strict JSON parser reads. It is now null."""
    calls = [
        {"event": "chat", "properties": {"model": "gpt-4o", "cost_usd": 1.7e308, "n": n}}
        for n in range(2)
    ]
    post_json_events(daemon.http_url(), calls)
    for view in ("models", "cost"):
        out = daemon.cli("stats", view, "--json").stdout
        assert _strict_json(out), view


def test_bash_completion_completes_commands_and_options() -> None:
    script = subprocess.run(
        [CLI, "completion", "bash"], capture_output=True, text=True, check=True
    ).stdout
    assert "_AGENT_TELEMETRY_COMPLETE=bash_complete" in script
    assert completions(script, "agent-telemetry se") == ["service"]
    assert completions(script, "agent-telemetry service ins") == ["install"]
    assert "--since" in completions(script, "agent-telemetry export --s")


@pytest.mark.parametrize(
    ("shell", "marker"),
    [
        ("zsh", "#compdef agent-telemetry"),
        ("fish", "complete --no-files --command agent-telemetry"),
    ],
)
def test_zsh_and_fish_scripts_call_back_into_the_program(shell: str, marker: str) -> None:
    script = subprocess.run(
        [CLI, "completion", shell], capture_output=True, text=True, check=True
    ).stdout
    assert marker in script
    assert f"_AGENT_TELEMETRY_COMPLETE={shell}_complete" in script


def test_completion_refuses_an_unknown_shell() -> None:
    result = subprocess.run([CLI, "completion", "tcsh"], capture_output=True, text=True)
    assert result.returncode == 2 and "'tcsh' is not one of 'bash', 'zsh', 'fish'" in result.stderr


def test_version() -> None:
    result = subprocess.run([CLI, "--version"], capture_output=True, text=True, check=True)
    assert result.stdout == f"agent-telemetry, version {__version__}\n"


# --- --env-file and where keys are read from ---


def test_env_file_sets_the_environment_of_any_command(
    daemon_factory: DaemonFactory, tmp_path: Path
) -> None:
    stopped = daemon_factory(start=False)
    env_file = tmp_path / "service.env"
    env_file.write_text("# the service's settings\nAGENT_TELEMETRY_HTTP_PORT='off'\n")
    env_file.chmod(0o600)
    out = run_cli(stopped, "--env-file", str(env_file), "status").stdout
    assert "http:         off (http_port = off)" in out.splitlines()
    # A missing file is skipped, as systemd's EnvironmentFile=-… does.
    missing = run_cli(stopped, "--env-file", str(tmp_path / "none.env"), "status")
    assert missing.returncode == 0
    assert "http:         a free loopback port picked at start" in missing.stdout


def test_env_file_others_can_read_or_with_a_bad_line_is_refused(
    daemon_factory: DaemonFactory, tmp_path: Path
) -> None:
    stopped = daemon_factory(start=False)
    env_file = tmp_path / "service.env"
    env_file.write_text("POSTHOG_API_KEY=phc_x\n")
    env_file.chmod(0o644)
    result = run_cli(stopped, "--env-file", str(env_file), "status")
    assert result.returncode == 1
    assert f"run: chmod 600 {env_file}" in result.stderr and "phc_x" not in result.stderr

    env_file.write_text("POSTHOG_API_KEY=phc_x\nthis is not an assignment\n")
    env_file.chmod(0o600)
    result = run_cli(stopped, "--env-file", str(env_file), "status")
    assert result.returncode == 1
    assert f"Error: {env_file}, line 2: expected NAME=value" in result.stderr


def test_env_file_others_can_read_is_used_when_it_holds_no_secret(
    daemon_factory: DaemonFactory, tmp_path: Path
) -> None:
    stopped = daemon_factory(start=False)
    env_file = tmp_path / "settings.env"
    env_file.write_text("AGENT_TELEMETRY_MODE=off\n")
    env_file.chmod(0o644)
    result = run_cli(stopped, "--env-file", str(env_file), "status")
    assert result.returncode == 0, result.stderr
    assert "mode:         off  (env: AGENT_TELEMETRY_MODE is set)" in result.stdout.splitlines()

    env_file.write_text("AGENT_TELEMETRY_MODE=off\nTELEMETRY_API_KEY=secret-value\n")
    result = run_cli(stopped, "--env-file", str(env_file), "status")
    assert result.returncode == 1
    assert result.stderr == (
        f"Error: {env_file} holds TELEMETRY_API_KEY but others may read it (mode 644); "
        f"run: chmod 600 {env_file}\n"
    )


def test_env_file_another_user_could_change_is_not_used_by_commands_or_the_daemon(
    daemon_factory: DaemonFactory, shared_folder: Path
) -> None:
    """A service.env beside a config in a shared folder, written by another user: upload
    on, content kept. Neither a command nor the daemon takes its settings."""
    stopped = daemon_factory(start=False)
    env_file = shared_folder / "service.env"
    env_file.write_text("AGENT_TELEMETRY_MODE=upload\nAGENT_TELEMETRY_CAPTURE_CONTENT=1\n")
    env_file.chmod(0o644)
    os.chown(env_file, OTHER_UID, OTHER_UID)
    expected = (
        f"{env_file} belongs to uid {OTHER_UID}, so its settings (where events go, whether "
        "they are sent) are not yours alone"
    )
    status = run_cli(stopped, "--env-file", str(env_file), "status")
    assert status.returncode == 1 and "mode:" not in status.stdout
    assert expected in status.stderr
    daemon = run_cli(stopped, "--env-file", str(env_file), "daemon")
    assert daemon.returncode == 1 and expected in daemon.stderr
    assert not stopped.api_socket.exists()


def test_enable_without_a_backend_says_where_the_daemon_reads_keys(
    daemon_factory: DaemonFactory,
) -> None:
    stopped = daemon_factory(start=False)
    out = run_cli(stopped, "enable").stdout
    assert "No backend is configured, so nothing is sent yet" in out
    assert f"{stopped.home}/service.env, NAME=value lines, when it runs as a service" in out
    assert "systemctl --user restart agent-telemetry.service" in out
    assert f"{stopped.home}/config.toml: [posthog] api_key" in out
    assert "the environment of the shell that runs `agent-telemetry daemon`" in out


def test_a_missing_key_error_names_every_place_the_daemon_looks(
    daemon_factory: DaemonFactory,
) -> None:
    stopped = daemon_factory({"AGENT_TELEMETRY_SENDER": "posthog"}, start=False)
    result = run_cli(stopped, "daemon")
    assert result.returncode == 3  # the daemon refuses to start: its own exit status
    [line] = result.stderr.splitlines()
    home = stopped.home
    assert line == (
        "Error: environment: sender: sender posthog needs POSTHOG_API_KEY: the daemon reads it"
        " from posthog.api_key "
        f"in {home}/config.toml (chmod 600), from POSTHOG_API_KEY=… in {home}/service.env "
        "when it runs as a service (then restart it), or from POSTHOG_API_KEY in the "
        "environment of the shell that runs `agent-telemetry daemon`"
    )
