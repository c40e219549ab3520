"""`service install|uninstall|status` on a temporary home, with recording fake service managers.

The fakes are real executables named `systemctl` and `launchctl` first on PATH: they append
their argv to a log file and answer the few queries the installer makes, so the code under
test runs its real subprocess path.
"""

from __future__ import annotations

import json
import os
import plistlib
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from agent_telemetryd.cli.service import service
from agent_telemetryd.service.install import find_executable, install, uninstall
from agent_telemetryd.service.layout import ServiceError, current_platform
from agent_telemetryd.service.manager import service_status

UID = 501

FAKE_MANAGER = """#!{python}
import json, os, sys
name = os.path.basename(sys.argv[0])
args = sys.argv[1:]
with open(os.environ["FAKE_MANAGER_LOG"], "a") as log:
    log.write(json.dumps([name, *args]) + "\\n")
fail = os.environ.get("FAKE_MANAGER_FAIL")
if fail and fail in " ".join(args):
    print("Failed: " + fail + " went wrong", file=sys.stderr)
    sys.exit(1)
if args[:2] == ["--user", "is-system-running"]:
    state = os.environ.get("FAKE_SYSTEMD_STATE", "running")
    print(state)
    sys.exit(0 if state == "running" else 1)
if args[:2] == ["--user", "show"]:
    sys.stdout.write(os.environ.get("FAKE_SYSTEMCTL_SHOW", ""))
if args[:1] == ["print"] and args[1].count("/") == 2:
    out = os.environ.get("FAKE_LAUNCHCTL_JOB")
    if out is None:
        print("Could not find service", file=sys.stderr)
        sys.exit(113)
    sys.stdout.write(out)
if args[:1] == ["bootout"] and "FAKE_LAUNCHCTL_JOB" not in os.environ:
    print("Boot-out failed: 3: No such process", file=sys.stderr)
    sys.exit(3)
if args[:1] == ["print-disabled"]:
    sys.stdout.write(os.environ.get("FAKE_LAUNCHCTL_DISABLED", ""))
"""


class FakeManager:
    """Reads back what the fake systemctl/launchctl were asked to do."""

    def __init__(self, log: Path) -> None:
        self.log = log

    def calls(self) -> list[list[str]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def clear(self) -> None:
        self.log.unlink(missing_ok=True)


@pytest.fixture
def manager(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeManager:
    bin_dir = tmp_path / "fakebin"
    bin_dir.mkdir()
    for name in ("systemctl", "launchctl"):
        script = bin_dir / name
        script.write_text(FAKE_MANAGER.format(python=sys.executable))
        script.chmod(0o755)
    log = tmp_path / "manager-calls.ndjson"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_MANAGER_LOG", str(log))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    for var in ("FAKE_MANAGER_FAIL", "FAKE_SYSTEMD_STATE", "FAKE_LAUNCHCTL_JOB"):
        monkeypatch.delenv(var, raising=False)
    return FakeManager(log)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    (path / "keep").mkdir(parents=True)
    (path / "keep" / "notes.txt").write_text("the user's own file")
    return path


def tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


UNIT_DIR = ".config/systemd/user"
LINUX_FILES = {f"{UNIT_DIR}/agent-telemetry.socket", f"{UNIT_DIR}/agent-telemetry.service"}
PLIST = "Library/LaunchAgents/dev.agent-telemetry.daemon.plist"


def test_dry_run_lists_files_and_commands_and_changes_nothing(
    home: Path, manager: FakeManager
) -> None:
    before = tree(home)
    plan = install(home=home, platform="linux", dry_run=True, uid=UID)
    assert tree(home) == before
    assert manager.calls() == []  # not even the manager probe
    assert plan.dry_run
    assert {str(p.relative_to(home)) for p in plan.files} == LINUX_FILES
    assert plan.commands == [
        ("systemctl", "--user", "daemon-reload"),
        (
            "systemctl",
            "--user",
            "enable",
            "--now",
            "agent-telemetry.socket",
            "agent-telemetry.service",
        ),
    ]
    written = {s.path.name: s.content for s in plan.steps if s.kind == "write" and s.path}
    assert f"ExecStart={find_executable()} daemon" in written["agent-telemetry.service"]


def test_install_then_uninstall_on_linux_leaves_the_home_as_it_was(
    home: Path, manager: FakeManager
) -> None:
    before = tree(home)
    install(home=home, platform="linux", uid=UID)
    assert tree(home) == before | LINUX_FILES
    for name in LINUX_FILES:
        assert (home / name).stat().st_mode & 0o777 == 0o644
    assert manager.calls() == [
        ["systemctl", "--user", "is-system-running"],
        ["systemctl", "--user", "daemon-reload"],
        [
            "systemctl",
            "--user",
            "enable",
            "--now",
            "agent-telemetry.socket",
            "agent-telemetry.service",
        ],
    ]

    manager.clear()
    uninstall(home=home, platform="linux", uid=UID)
    assert tree(home) == before
    assert (home / "keep" / "notes.txt").read_text() == "the user's own file"
    assert manager.calls() == [
        [
            "systemctl",
            "--user",
            "disable",
            "--now",
            "agent-telemetry.socket",
            "agent-telemetry.service",
        ],
        ["systemctl", "--user", "daemon-reload"],
        [
            "systemctl",
            "--user",
            "reset-failed",
            "agent-telemetry.socket",
            "agent-telemetry.service",
        ],
    ]


def test_uninstall_dry_run_removes_nothing(home: Path, manager: FakeManager) -> None:
    install(home=home, platform="linux", uid=UID)
    manager.clear()
    plan = uninstall(home=home, platform="linux", uid=UID, dry_run=True)
    assert {str(p.relative_to(home)) for p in plan.files} == LINUX_FILES
    assert all((home / f).exists() for f in LINUX_FILES)
    assert manager.calls() == []


def test_uninstall_when_not_installed_does_nothing(home: Path, manager: FakeManager) -> None:
    plan = uninstall(home=home, platform="linux", uid=UID)
    assert plan.steps == ()
    assert "not installed" in plan.notes[0]
    assert manager.calls() == []


def test_reinstall_restarts_only_when_the_unit_changed(
    home: Path, manager: FakeManager, tmp_path: Path
) -> None:
    install(home=home, platform="linux", uid=UID)
    manager.clear()
    install(home=home, platform="linux", uid=UID)
    assert ["systemctl", "--user", "try-restart", "agent-telemetry.service"] not in manager.calls()

    moved = tmp_path / "elsewhere" / "agent-telemetry"
    moved.parent.mkdir()
    moved.symlink_to(find_executable())
    manager.clear()
    install(home=home, platform="linux", uid=UID, executable=moved)
    assert manager.calls()[-1] == ["systemctl", "--user", "try-restart", "agent-telemetry.service"]
    assert f"ExecStart={moved} daemon" in (home / UNIT_DIR / "agent-telemetry.service").read_text()


@pytest.mark.parametrize("state", ["offline", "unknown"])
def test_install_refuses_without_a_user_manager(
    home: Path, manager: FakeManager, monkeypatch: pytest.MonkeyPatch, state: str
) -> None:
    monkeypatch.setenv("FAKE_SYSTEMD_STATE", state)
    before = tree(home)
    with pytest.raises(ServiceError, match="agent-telemetry daemon` from a login script"):
        install(home=home, platform="linux", uid=UID)
    assert tree(home) == before
    assert manager.calls() == [["systemctl", "--user", "is-system-running"]]


def test_degraded_manager_is_still_a_manager(
    home: Path, manager: FakeManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    """is-system-running exits 1 for "degraded", but the manager is there and usable."""
    monkeypatch.setenv("FAKE_SYSTEMD_STATE", "degraded")
    install(home=home, platform="linux", uid=UID)
    assert tree(home) >= LINUX_FILES


def test_install_refuses_without_xdg_runtime_dir(
    home: Path, manager: FakeManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    with pytest.raises(ServiceError, match="XDG_RUNTIME_DIR is not set"):
        install(home=home, platform="linux", uid=UID)
    assert manager.calls() == []


def test_install_refuses_when_systemctl_is_missing(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    with pytest.raises(ServiceError, match="command not found"):
        install(home=home, platform="linux", uid=UID)


def test_a_failing_enable_is_one_line_with_the_way_back(
    home: Path, manager: FakeManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_MANAGER_FAIL", "enable")
    with pytest.raises(ServiceError) as info:
        install(home=home, platform="linux", uid=UID)
    message = str(info.value)
    assert "\n" not in message
    assert "enable --now" in message and "went wrong" in message
    assert "agent-telemetry service uninstall" in message


def test_macos_install_and_uninstall(home: Path, manager: FakeManager) -> None:
    before = tree(home)
    plan = install(home=home, platform="darwin", uid=UID)
    assert tree(home) == before | {PLIST}
    assert (home / "Library/Logs/agent-telemetry").is_dir()
    plist = plistlib.loads((home / PLIST).read_bytes())
    assert plist["ProgramArguments"] == [str(find_executable()), "daemon"]
    assert plist["StandardErrorPath"] == str(home / "Library/Logs/agent-telemetry/daemon.log")
    assert manager.calls() == [
        ["launchctl", "print", f"gui/{UID}"],
        ["launchctl", "bootout", f"gui/{UID}/dev.agent-telemetry.daemon"],
        ["launchctl", "enable", f"gui/{UID}/dev.agent-telemetry.daemon"],
        ["launchctl", "bootstrap", f"gui/{UID}", str(home / PLIST)],
    ]
    # A first install has nothing to boot out; that failure is expected and reported, not fatal.
    assert (
        "No such process"
        in plan.tolerated[f"launchctl bootout gui/{UID}/dev.agent-telemetry.daemon"]
    )

    manager.clear()
    uninstall(home=home, platform="darwin", uid=UID)
    assert tree(home) == before
    assert manager.calls() == [["launchctl", "bootout", f"gui/{UID}/dev.agent-telemetry.daemon"]]


def test_macos_refuses_without_a_gui_session(
    home: Path, manager: FakeManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_MANAGER_FAIL", "print")
    with pytest.raises(ServiceError, match="no launchd GUI session"):
        install(home=home, platform="darwin", uid=UID)
    assert not (home / PLIST).exists()


def test_platform_selection() -> None:
    assert current_platform("linux") == "linux"
    assert current_platform("darwin") == "darwin"
    with pytest.raises(ServiceError, match="win32"):
        current_platform("win32")


def test_real_home_honours_xdg_config_home(
    tmp_path: Path, manager: FakeManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    """systemd reads user units from $XDG_CONFIG_HOME/systemd/user when that is set."""
    monkeypatch.setenv("HOME", str(tmp_path / "realhome"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    plan = install(platform="linux", uid=UID, dry_run=True)
    assert {p.parent for p in plan.files} == {tmp_path / "xdg" / "systemd" / "user"}


def test_find_executable_prefers_the_running_program(tmp_path: Path) -> None:
    program = tmp_path / "bin" / "agent-telemetry"
    program.parent.mkdir()
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)
    assert find_executable(str(program)) == program
    found = find_executable("/usr/bin/pytest")  # not us: falls back to PATH / this venv
    assert found.is_absolute() and found.name == "agent-telemetry" and found.exists()


def test_explicit_executable_must_exist(home: Path, tmp_path: Path) -> None:
    with pytest.raises(ServiceError, match="does not exist"):
        install(home=home, platform="linux", executable=tmp_path / "nope", dry_run=True)


SHOW_RUNNING = """Id=agent-telemetry.socket
LoadState=loaded
ActiveState=active
SubState=listening
UnitFileState=enabled

MainPID=4242
Id=agent-telemetry.service
LoadState=loaded
ActiveState=active
SubState=running
UnitFileState=enabled
"""


def test_status_linux(home: Path, manager: FakeManager, monkeypatch: pytest.MonkeyPatch) -> None:
    status = service_status(home=home, platform="linux", uid=UID)
    assert (status.installed, status.running, status.manager) == (False, False, True)

    install(home=home, platform="linux", uid=UID)
    monkeypatch.setenv("FAKE_SYSTEMCTL_SHOW", SHOW_RUNNING)
    status = service_status(home=home, platform="linux", uid=UID)
    assert status.installed and status.enabled and status.running
    assert status.pid == 4242
    assert [u.name for u in status.units] == ["agent-telemetry.socket", "agent-telemetry.service"]


def test_status_without_manager_reports_instead_of_failing(
    home: Path, manager: FakeManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_SYSTEMD_STATE", "offline")
    status = service_status(home=home, platform="linux", uid=UID)
    assert not status.manager and "login script" in (status.manager_detail or "")
    assert status.units == []


def test_status_macos(home: Path, manager: FakeManager, monkeypatch: pytest.MonkeyPatch) -> None:
    install(home=home, platform="darwin", uid=UID)
    monkeypatch.setenv(
        "FAKE_LAUNCHCTL_JOB",
        "gui/501/dev.agent-telemetry.daemon = {\n\tstate = running\n\tpid = 777\n}\n",
    )
    status = service_status(home=home, platform="darwin", uid=UID)
    assert status.installed and status.enabled and status.running and status.pid == 777
    monkeypatch.setenv("FAKE_LAUNCHCTL_DISABLED", '\t"dev.agent-telemetry.daemon" => disabled\n')
    assert not service_status(home=home, platform="darwin", uid=UID).enabled


# The CLI runs against the real home: HOME points at the temporary one.


@pytest.fixture
def cli_home(home: Path, manager: FakeManager, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    if current_platform() != "linux":
        pytest.skip("CLI tests drive the host platform's manager; the fakes mimic Linux here")
    return home


def test_cli_install_dry_run_prints_files_and_commands(cli_home: Path) -> None:
    result = CliRunner().invoke(service, ["install", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert f"would write: {cli_home / UNIT_DIR / 'agent-telemetry.service'}" in result.output
    assert f"    ExecStart={find_executable()} daemon" in result.output
    assert "would run: systemctl --user enable --now" in result.output
    assert tree(cli_home) == {"keep/notes.txt"}


def test_cli_install_status_uninstall(
    cli_home: Path, manager: FakeManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = CliRunner()
    result = runner.invoke(service, ["install"])
    assert result.exit_code == 0, result.output
    assert "ran: systemctl --user enable --now" in result.output
    assert "undo with: agent-telemetry service uninstall" in result.output

    monkeypatch.setenv("FAKE_SYSTEMCTL_SHOW", SHOW_RUNNING)
    result = runner.invoke(service, ["status", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["installed"] and data["enabled"] and data["running"] and data["pid"] == 4242
    result = runner.invoke(service, ["status"])
    assert "running:   yes (pid 4242)" in result.output

    result = runner.invoke(service, ["uninstall", "--json"])
    assert result.exit_code == 0, result.output
    assert [s for s in json.loads(result.output)["steps"] if "remove" in s]
    assert tree(cli_home) == {"keep/notes.txt"}


def test_cli_error_is_one_line(cli_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_SYSTEMD_STATE", "offline")
    result = CliRunner().invoke(service, ["install"])
    assert result.exit_code == 1
    assert result.output.startswith("Error: no systemd user manager reachable")
    assert result.output.count("\n") == 1
    assert "Traceback" not in result.output


def test_every_command_has_help() -> None:
    for name in ("install", "uninstall", "status"):
        result = CliRunner().invoke(service, [name, "--help"])
        assert result.exit_code == 0 and "Example:" in result.output
