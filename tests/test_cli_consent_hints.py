"""The mode's environment variables as a command tells of them: those of its own shell that
a running daemon does not have are named (they change nothing), and when one of the
daemon's overrides the stored choice, the hint names it instead of the command just run."""

from __future__ import annotations

import subprocess

import pytest

from tests.conftest import DaemonFactory
from tests.daemon_process import CLI, DaemonProcess


def run_cli(daemon: DaemonProcess, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, *args], env={**daemon.env, **env}, capture_output=True, text=True, timeout=60
    )


def daemon_places(daemon: DaemonProcess) -> str:
    return (
        f"where the daemon is started ({daemon.home}/service.env when it runs as a service, "
        "then: systemctl --user restart agent-telemetry.service; or the shell that runs "
        "`agent-telemetry daemon`, then restart it)"
    )


def test_consent_variables_of_this_shell_alone_are_named_with_where_they_would_count(
    daemon: DaemonProcess,
) -> None:
    enabled = run_cli(daemon, "enable", DO_NOT_TRACK="1")
    assert enabled.returncode == 0, enabled.stderr
    assert enabled.stdout.splitlines()[0] == "Mode: upload"  # the daemon's environment decides
    assert enabled.stderr.splitlines() == [
        "Warning: DO_NOT_TRACK is set in this shell but not in the running daemon's "
        "environment, and the daemon's own environment decides its mode: here it changes "
        f"nothing. To make it count, set it {daemon_places(daemon)}."
    ]

    status = run_cli(
        daemon,
        "status",
        DO_NOT_TRACK="1",
        CI="true",
        AGENT_TELEMETRY_MODE="local",
        AGENT_TELEMETRY_DISABLED="1",
    )
    assert status.returncode == 0, status.stderr
    assert "mode:         upload  (command: set by agent-telemetry on" in status.stdout
    assert status.stderr.splitlines() == [
        "Warning: AGENT_TELEMETRY_DISABLED, AGENT_TELEMETRY_MODE=local, DO_NOT_TRACK and CI "
        "are set in this shell but not in the running daemon's environment, and the daemon's "
        "own environment decides its mode: here they change nothing. To make them count, set "
        f"them {daemon_places(daemon)}."
    ]
    # What the daemon's environment has too (or says nothing of) is no warning.
    assert run_cli(daemon, "status", CI="false", DO_NOT_TRACK="").stderr == ""


@pytest.mark.parametrize(
    ("daemon_env", "stored_line", "hint"),
    [
        (
            {"AGENT_TELEMETRY_MODE": "local"},
            "Stored upload, but env decides for now: AGENT_TELEMETRY_MODE is set.",
            "Events are kept for you only and never sent: AGENT_TELEMETRY_MODE decides. To "
            "upload: unset AGENT_TELEMETRY_MODE {places}; the stored choice (upload) then applies",
        ),
        (
            {"DO_NOT_TRACK": "1"},
            "Stored upload, but DO_NOT_TRACK decides for now: DO_NOT_TRACK is set: nothing is "
            "uploaded.",
            "Events are kept for you only and never sent: DO_NOT_TRACK decides. To upload: "
            "unset DO_NOT_TRACK {places}; the stored choice (upload) then applies",
        ),
        (
            {"AGENT_TELEMETRY_DISABLED": "1"},
            "Stored upload, but AGENT_TELEMETRY_DISABLED decides for now: "
            "AGENT_TELEMETRY_DISABLED is set.",
            "Nothing is kept or sent: AGENT_TELEMETRY_DISABLED decides. Keep events again: "
            "unset AGENT_TELEMETRY_DISABLED {places}; the stored choice (upload) then applies",
        ),
    ],
)
def test_enable_overridden_by_a_variable_names_the_variable_to_unset(
    daemon_factory: DaemonFactory, daemon_env: dict[str, str], stored_line: str, hint: str
) -> None:
    daemon = daemon_factory(daemon_env)
    result = daemon.cli("enable")
    lines = result.stdout.splitlines()
    assert lines[1:3] == [stored_line, hint.format(places=daemon_places(daemon))]
    assert "agent-telemetry enable" not in result.stdout
    assert "agent-telemetry mode local" not in result.stdout
    assert result.stderr == ""


def test_with_the_daemon_down_the_hint_names_this_shell(daemon_factory: DaemonFactory) -> None:
    down = daemon_factory({"DO_NOT_TRACK": "1"}, start=False)
    assert down.cli("enable").stdout.splitlines()[:3] == [
        "Mode: local",
        "Stored upload, but DO_NOT_TRACK decides for now: DO_NOT_TRACK is set: nothing is "
        "uploaded.",
        "Events are kept for you only and never sent: DO_NOT_TRACK decides. To upload: unset "
        "DO_NOT_TRACK in this shell and wherever the daemon is started; the stored choice "
        "(upload) then applies",
    ]
    # Without a variable in the way, the way back is the command.
    plain = daemon_factory(start=False).cli("disable").stdout.splitlines()
    assert plain[-1] == (
        "Events are kept for you only and never sent. "
        "Send them to the configured backend: agent-telemetry enable"
    )
