"""A broken config: every problem named at once with a suggestion; the commands a user
needs to look, stop, export and erase still run (warning on stderr); only the daemon
refuses to start."""

from __future__ import annotations

import json
import subprocess

from tests.conftest import DaemonFactory
from tests.daemon_process import CLI, DaemonProcess

TWO_TYPOS = 'upload_intervall = "15m"\nbatch_size = 20\n[posthog]\napi_kye = "phc_x"\n'


def broken_home(daemon_factory: DaemonFactory) -> DaemonProcess:
    process = daemon_factory(start=False)
    config = process.home / "config.toml"
    config.write_text(TWO_TYPOS)
    config.chmod(0o600)
    return process


def test_the_daemon_refuses_naming_both_typos(daemon_factory: DaemonFactory) -> None:
    process = broken_home(daemon_factory)
    config = process.home / "config.toml"
    result = subprocess.run(
        [CLI, "daemon"], env=process.env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 3
    assert result.stderr.splitlines() == [
        f"Error: {config}: upload_intervall: unknown setting; did you mean upload_interval?",
        f"Error: {config}: posthog.api_kye: unknown setting; did you mean posthog.api_key?",
    ]
    assert not process.api_socket.exists()


def test_status_mode_and_the_erasing_commands_still_run(daemon_factory: DaemonFactory) -> None:
    process = broken_home(daemon_factory)
    status = process.cli("status", "--json")
    assert json.loads(status.stdout)["running"] is False  # stdout stays plain JSON
    assert "upload_intervall: unknown setting; did you mean upload_interval?" in status.stderr
    assert "posthog.api_kye: unknown setting; did you mean posthog.api_key?" in status.stderr
    assert "Warning:" in status.stderr

    off = process.cli("mode", "off")
    assert "Mode: off" in off.stdout and "api_kye" in off.stderr
    assert json.loads(process.cli("status", "--json").stdout)["mode"] == "off"
    for args in (("disable",), ("export",), ("clear", "--yes"), ("forget", "--yes")):
        result = process.cli(*args)
        assert "did you mean upload_interval?" in result.stderr, args
    assert json.loads(process.cli("status", "--json").stdout)["mode"] == "local"

    doctor = process.cli("doctor", "--json", check=False)
    assert doctor.returncode == 1  # it ran, and found the config wanting
    (config_check,) = [c for c in json.loads(doctor.stdout)["checks"] if c["name"] == "config"]
    assert config_check["verdict"] == "fail"
    assert "did you mean upload_interval?" in config_check["detail"]
    assert "did you mean posthog.api_key?" in config_check["detail"]


# What TOML allows that is no count and no time: infinity, NaN, a fraction of a whole.
NOT_NUMBERS = "upload_interval = nan\nbatch_size = 7.5\n[store]\nretention_days = inf\n"


def test_infinity_nan_and_fractions_are_named_not_a_traceback(
    daemon_factory: DaemonFactory,
) -> None:
    """`retention_days = inf` (keep forever, a user may think) crashed every command with
    an OverflowError; `batch_size = 7.5` became 7 unsaid; `upload_interval = nan` failed the
    daemon's start without naming the setting. Each is now a problem named with its key:
    the commands warn and run, the daemon refuses with all three."""
    process = daemon_factory(start=False)
    config = process.home / "config.toml"
    config.write_text(NOT_NUMBERS)
    config.chmod(0o600)
    expected = [
        f"{config}: upload_interval: nan is not a duration (use seconds, or 30s, 15m, 1h)",
        f"{config}: batch_size: 7.5 is not a whole number",
        f"{config}: store.retention_days: inf is not a whole number",
    ]
    status = process.cli("status", "--json")
    assert json.loads(status.stdout)["running"] is False
    assert "Traceback" not in status.stderr
    assert status.stderr.splitlines()[:3] == [f"Warning: {line}" for line in expected]
    result = subprocess.run(
        [CLI, "daemon"], env=process.env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 3
    assert result.stderr.splitlines() == [f"Error: {line}" for line in expected]


def test_a_buffer_cap_too_small_to_hold_an_event_is_refused(
    daemon_factory: DaemonFactory,
) -> None:
    """`AGENT_TELEMETRY_MAX_BYTES=100000` (100 KB meant as "small") is less than an empty
    buffer: the daemon started and answered every event "buffer full" with none stored.
    Now it refuses to start, saying why and what the least is."""
    process = daemon_factory({"AGENT_TELEMETRY_MAX_BYTES": "100000"}, start=False)
    result = subprocess.run(
        [CLI, "daemon"], env=process.env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 3
    (line,) = result.stderr.splitlines()
    assert line.startswith(
        "Error: environment: AGENT_TELEMETRY_MAX_BYTES: 100000 bytes is too small for a"
        " buffer: at least 1048576 (1 MiB); an empty buffer takes "
    )
    process.env["AGENT_TELEMETRY_MAX_BYTES"] = str(1024 * 1024)
    process.start()
    status = process.status()
    assert status["running"] is True and status["buffer"]["events"] == 0
    # The size the message gives is that of the empty buffer the daemon just made.
    assert line.endswith(f" {status['buffer']['bytes'] // 1024} KiB before any event"), line
