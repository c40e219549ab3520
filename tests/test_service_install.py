"""`service install|uninstall|status` on a temporary home, with recording fake service managers.

The fakes are real executables named `systemctl` and `launchctl` first on PATH: they append
their argv to a log file and answer the few queries the installer makes, so the code under
test runs its real subprocess path.
"""

from __future__ import annotations

import json
import os
import plistlib
import stat
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from agent_telemetryd.cli import main as cli
from agent_telemetryd.cli.service import service
from agent_telemetryd.paths import resolve_paths
from agent_telemetryd.service import envfile
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
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The user's home; also $HOME, so the config folder (and service.env) is inside it,
    and none of the machine's own agent-telemetry or sender settings leak in."""
    path = tmp_path / "home"
    (path / "keep").mkdir(parents=True)
    (path / "keep" / "notes.txt").write_text("the user's own file")
    monkeypatch.setenv("HOME", str(path))
    for name in list(os.environ):
        if name.startswith(("AGENT_TELEMETRY_", "POSTHOG_", "TELEMETRY_", "XDG_CONFIG_HOME")):
            monkeypatch.delenv(name)
    return path


def tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


UNIT_DIR = ".config/systemd/user"
UNITS = (
    "agent-telemetry.socket",
    "agent-telemetry-http.socket",
    "agent-telemetry.service",
    "agent-telemetry-flush.service",
    "agent-telemetry-flush.timer",
)
STARTED = ("agent-telemetry.socket", "agent-telemetry.service", "agent-telemetry-flush.timer")
# The HTTP port's unit is enabled without --now: the service's start starts it, and a
# taken port must not make the install fail.
ENABLE_COMMANDS = [
    ("systemctl", "--user", "enable", "--now", *STARTED),
    ("systemctl", "--user", "enable", "agent-telemetry-http.socket"),
]
ENABLED = (
    "agent-telemetry.socket",
    "agent-telemetry-http.socket",
    "agent-telemetry.service",
    "agent-telemetry-flush.timer",
)
LINUX_FILES = {f"{UNIT_DIR}/{name}" for name in UNITS}
ENV_FILE = ".config/agent-telemetry/service.env"
PLIST = "Library/LaunchAgents/dev.agent-telemetry.daemon.plist"
FLUSH_PLIST = "Library/LaunchAgents/dev.agent-telemetry.flush.plist"
MAC_ENV_FILE = "Library/Application Support/agent-telemetry/service.env"


def test_dry_run_lists_files_and_commands_and_changes_nothing(
    home: Path, manager: FakeManager
) -> None:
    before = tree(home)
    plan = install(home=home, platform="linux", dry_run=True, uid=UID)
    assert tree(home) == before
    # Only the read-only probe a real install makes before writing anything.
    assert manager.calls() == [["systemctl", "--user", "is-system-running"]]
    assert plan.dry_run and plan.refusals == ()
    assert {str(p.relative_to(home)) for p in plan.files} == LINUX_FILES | {ENV_FILE}
    assert plan.commands == [
        ("systemctl", "--user", "daemon-reload"),
        *ENABLE_COMMANDS,
    ]
    written = {s.path.name: s.content for s in plan.steps if s.kind == "write" and s.path}
    assert f"ExecStart={find_executable()} daemon" in written["agent-telemetry.service"]
    assert f"ExecStart={find_executable()} flush" in written["agent-telemetry-flush.service"]
    assert f"EnvironmentFile=-{home / ENV_FILE}" in written["agent-telemetry.service"]
    assert 'Environment="AGENT_TELEMETRY_HOME' not in written["agent-telemetry.service"]


def test_install_then_uninstall_on_linux_leaves_the_home_as_it_was(
    home: Path, manager: FakeManager
) -> None:
    before = tree(home)
    install(home=home, platform="linux", uid=UID)
    assert tree(home) == before | LINUX_FILES | {ENV_FILE}
    for name in LINUX_FILES:
        assert (home / name).stat().st_mode & 0o777 == 0o644
    assert (home / ENV_FILE).stat().st_mode & 0o777 == 0o600
    assert (home / ENV_FILE).parent.stat().st_mode & 0o777 == 0o700
    assert manager.calls() == [
        ["systemctl", "--user", "is-system-running"],
        ["systemctl", "--user", "daemon-reload"],
        *(list(command) for command in ENABLE_COMMANDS),
    ]

    manager.clear()
    uninstall(home=home, platform="linux", uid=UID)
    # The environment file goes too: it is still as install made it, with no keys in it.
    assert tree(home) == before
    assert (home / "keep" / "notes.txt").read_text() == "the user's own file"
    assert manager.calls() == [
        ["systemctl", "--user", "disable", "--now", *UNITS],
        ["systemctl", "--user", "daemon-reload"],
        ["systemctl", "--user", "reset-failed", *UNITS],
    ]


def test_uninstall_dry_run_removes_nothing(home: Path, manager: FakeManager) -> None:
    install(home=home, platform="linux", uid=UID)
    manager.clear()
    plan = uninstall(home=home, platform="linux", uid=UID, dry_run=True)
    assert {str(p.relative_to(home)) for p in plan.files} == LINUX_FILES | {ENV_FILE}
    assert all((home / f).exists() for f in LINUX_FILES | {ENV_FILE})
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
    assert tree(home) == before | {PLIST, FLUSH_PLIST, MAC_ENV_FILE}
    assert (home / "Library/Logs/agent-telemetry").is_dir()
    plist = plistlib.loads((home / PLIST).read_bytes())
    env_file = str(home / MAC_ENV_FILE)
    assert plist["ProgramArguments"] == [str(find_executable()), "--env-file", env_file, "daemon"]
    assert plist["StandardErrorPath"] == str(home / "Library/Logs/agent-telemetry/daemon.log")
    flush = plistlib.loads((home / FLUSH_PLIST).read_bytes())
    assert flush["ProgramArguments"][-1] == "flush" and flush["StartInterval"] == 3600
    daemon_job, flush_job = (f"gui/{UID}/dev.agent-telemetry.{n}" for n in ("daemon", "flush"))
    assert manager.calls() == [
        ["launchctl", "print", f"gui/{UID}"],
        ["launchctl", "bootout", daemon_job],
        ["launchctl", "enable", daemon_job],
        ["launchctl", "bootstrap", f"gui/{UID}", str(home / PLIST)],
        ["launchctl", "bootout", flush_job],
        ["launchctl", "enable", flush_job],
        ["launchctl", "bootstrap", f"gui/{UID}", str(home / FLUSH_PLIST)],
    ]
    # A first install has nothing to boot out; that failure is expected and reported, not fatal.
    assert "No such process" in plan.tolerated[f"launchctl bootout {daemon_job}"]

    manager.clear()
    uninstall(home=home, platform="darwin", uid=UID)
    assert tree(home) == before
    assert manager.calls() == [
        ["launchctl", "bootout", daemon_job],
        ["launchctl", "bootout", flush_job],
    ]


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
    units = {p.parent for p in plan.files if p.name != "service.env"}
    assert units == {tmp_path / "xdg" / "systemd" / "user"}
    # The daemon's config folder follows XDG_CONFIG_HOME too, and the env file lives there.
    assert tmp_path / "xdg" / "agent-telemetry" / "service.env" in plan.files


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

Id=agent-telemetry-http.socket
LoadState=loaded
ActiveState=active
SubState=running
UnitFileState=enabled

MainPID=4242
Id=agent-telemetry.service
LoadState=loaded
ActiveState=active
SubState=running
UnitFileState=enabled

Id=agent-telemetry-flush.timer
LoadState=loaded
ActiveState=active
SubState=waiting
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
    assert [u.name for u in status.units] == list(ENABLED)
    assert status.units[3].state == "active/waiting"


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


def test_cli_dry_run_says_which_folders_are_there_already(cli_home: Path) -> None:
    (cli_home / UNIT_DIR).mkdir(parents=True)
    result = CliRunner().invoke(service, ["install", "--dry-run"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert f"exists: {cli_home / UNIT_DIR}" in lines
    assert f"would create: {cli_home / UNIT_DIR}" not in lines
    assert f"would create: {cli_home / '.config' / 'agent-telemetry'}" in lines


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


# Dry run and real install: the same checks, the same verdict.


def test_dry_run_refuses_exactly_when_a_real_install_does(
    home: Path, manager: FakeManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_SYSTEMD_STATE", "offline")
    before = tree(home)
    plan = install(home=home, platform="linux", dry_run=True, uid=UID)
    with pytest.raises(ServiceError) as real:
        install(home=home, platform="linux", uid=UID)
    assert plan.refusals == (str(real.value),)
    assert "no systemd user manager reachable" in str(real.value)
    assert tree(home) == before


def test_cli_dry_run_exits_like_the_real_install(
    cli_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_SYSTEMD_STATE", "offline")
    runner = CliRunner()
    dry = runner.invoke(service, ["install", "--dry-run"])
    real = runner.invoke(service, ["install"])
    assert dry.exit_code == real.exit_code == 1
    # The plan is still shown, then what a real install would refuse.
    assert "would write: " in dry.output and "ExecStart=" in dry.output
    assert "Error: a real install would refuse: no systemd user manager reachable" in dry.output
    assert tree(cli_home) == {"keep/notes.txt"}

    monkeypatch.setenv("FAKE_SYSTEMD_STATE", "running")
    assert runner.invoke(service, ["install", "--dry-run"]).exit_code == 0


def test_dry_run_units_carry_agent_telemetry_home_and_the_env_file(
    cli_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A service without AGENT_TELEMETRY_HOME would use another buffer and config than the
    shell that installed it; the units carry it, and look for the sockets under it."""
    at_home = tmp_path / "portable"
    monkeypatch.setenv("AGENT_TELEMETRY_HOME", str(at_home))
    result = CliRunner().invoke(service, ["install", "--dry-run"])
    assert result.exit_code == 0, result.output
    lines = [line.strip() for line in result.output.splitlines()]
    assert lines.count(f'Environment="AGENT_TELEMETRY_HOME={at_home}"') == 2  # daemon, flush
    assert lines.count(f"EnvironmentFile=-{at_home}/service.env") == 2
    assert f"ListenStream={at_home}/run/api.sock" in lines
    assert f"would write: {at_home}/service.env" in lines
    assert not at_home.exists()


def test_keys_in_this_shell_go_to_a_private_env_file_and_never_to_the_screen(
    cli_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = "phc_" + "k3y" * 10
    monkeypatch.setenv("POSTHOG_API_KEY", key)
    monkeypatch.setenv("POSTHOG_HOST", "https://eu.i.posthog.com")
    runner = CliRunner()
    for args in (["install", "--dry-run"], ["install", "--dry-run", "--json"], ["install"]):
        result = runner.invoke(service, args)
        assert result.exit_code == 0, result.output
        assert key not in result.output
        if "--dry-run" in args:
            assert f"POSTHOG_API_KEY=<hidden: {len(key)} characters>" in result.output

    env_file = cli_home / ENV_FILE
    assert env_file.stat().st_mode & 0o777 == 0o600
    text = env_file.read_text()
    assert text.startswith("# ")  # says what it is for and how to restart the service
    assert "systemctl --user restart agent-telemetry.service" in text
    assert envfile.parse_env_text(text) == {
        "POSTHOG_API_KEY": key,
        "POSTHOG_HOST": "https://eu.i.posthog.com",
    }

    result = runner.invoke(service, ["uninstall"])
    assert f"kept: {env_file} (your settings for the service)" in result.output
    assert tree(cli_home) == {"keep/notes.txt", ENV_FILE}


def test_dry_run_hides_key_values_but_shows_which_keys(
    home: Path, manager: FakeManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TELEMETRY_API_KEY", "s3cret-value")
    monkeypatch.setenv("TELEMETRY_ENDPOINT", "https://telemetry.example.com")
    plan = install(home=home, platform="linux", uid=UID, dry_run=True)
    shown = json.dumps(plan.to_dict())
    assert "s3cret-value" not in shown
    assert "TELEMETRY_API_KEY=<hidden: 12 characters>" in shown
    assert "TELEMETRY_ENDPOINT=https://telemetry.example.com" in shown
    assert any(
        "copied from this shell: TELEMETRY_ENDPOINT, TELEMETRY_API_KEY" in n for n in plan.notes
    )


def test_an_existing_env_file_is_kept_and_keys_missing_from_it_are_named(
    home: Path, manager: FakeManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    env_file = home / ENV_FILE
    env_file.parent.mkdir(parents=True)
    env_file.write_text("TELEMETRY_ENDPOINT=https://t.example.com\n")
    env_file.chmod(0o600)
    monkeypatch.setenv("TELEMETRY_API_KEY", "only-in-the-shell")
    plan = install(home=home, platform="linux", uid=UID)
    assert env_file.read_text() == "TELEMETRY_ENDPOINT=https://t.example.com\n"
    assert env_file not in plan.files
    [note] = [n for n in plan.notes if "TELEMETRY_API_KEY" in n]
    assert f"set in this shell but not in {env_file}: the service does not see it" in note
    assert "systemctl --user restart agent-telemetry.service" in note


def test_an_env_file_others_can_read_is_refused_with_the_fix(
    home: Path, manager: FakeManager
) -> None:
    env_file = home / ENV_FILE
    env_file.parent.mkdir(parents=True)
    env_file.write_text("POSTHOG_API_KEY=phc_x\n")
    env_file.chmod(0o644)
    before = tree(home)
    plan = install(home=home, platform="linux", uid=UID, dry_run=True)
    assert plan.refusals == (
        f"{env_file} holds the service's keys but others may read it (mode 644); "
        f"run: chmod 600 {env_file}",
    )
    with pytest.raises(ServiceError, match="chmod 600"):
        install(home=home, platform="linux", uid=UID)
    assert tree(home) == before


def test_a_malformed_env_file_is_refused_naming_the_line(home: Path, manager: FakeManager) -> None:
    env_file = home / ENV_FILE
    env_file.parent.mkdir(parents=True)
    env_file.write_text("# keys\nexport POSTHOG_API_KEY=phc_x\n")
    env_file.chmod(0o600)
    with pytest.raises(ServiceError, match=r"service.env, line 2: expected NAME=value"):
        install(home=home, platform="linux", uid=UID)


def timer_interval(home: Path) -> str:
    text = (home / UNIT_DIR / "agent-telemetry-flush.timer").read_text()
    [line] = [line for line in text.splitlines() if line.startswith("OnUnitActiveSec=")]
    return line.partition("=")[2]


def test_the_timer_uploads_at_the_interval_the_daemon_will_use(
    home: Path, manager: FakeManager
) -> None:
    """The interval comes from the config file, overridden by the service's env file."""
    config = home / ".config" / "agent-telemetry" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text('upload_interval = "15m"\n')
    install(home=home, platform="linux", uid=UID)
    assert timer_interval(home) == "900s"

    (home / ENV_FILE).write_text("AGENT_TELEMETRY_UPLOAD_INTERVAL=30m\n")
    manager.clear()
    install(home=home, platform="linux", uid=UID)
    assert timer_interval(home) == "1800s"
    # A running timer keeps its old schedule until restarted.
    assert manager.calls()[-1] == [
        "systemctl",
        "--user",
        "try-restart",
        "agent-telemetry-flush.timer",
    ]


def test_a_config_the_daemon_would_refuse_is_refused_by_install_with_every_problem(
    home: Path, manager: FakeManager
) -> None:
    """The daemon does not start on a config with problems, so a service installed on one
    would fail at once and at every activation: install refuses before writing anything,
    naming each problem, and a dry run says so too."""
    config = home / ".config" / "agent-telemetry" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text('upload_intervall = "15m"\nbatch_size = -3\n')
    with pytest.raises(ServiceError) as refused:
        install(home=home, platform="linux", uid=UID)
    message = str(refused.value)
    assert "the service's daemon would not start with this config" in message
    assert "did you mean upload_interval?" in message
    assert "batch_size: must be greater than zero" in message
    assert not (home / ".config" / "systemd" / "user" / "agent-telemetry.service").exists()
    assert not any(call[:3] == ["systemctl", "--user", "enable"] for call in manager.calls())

    dry = install(home=home, platform="linux", uid=UID, dry_run=True)
    assert dry.refusals == (message,)

    config.write_text('upload_interval = "15m"\n')
    install(home=home, platform="linux", uid=UID)
    assert timer_interval(home) == "900s"


def test_macos_install_makes_the_socket_folder_private_before_launchd_binds_in_it(
    home: Path, manager: FakeManager, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """On a Mac the runtime folder is under the per-user $TMPDIR; launchd expands no
    variables, so the plist names the folder, which install creates 0700 first, and the
    daemon gets the $TMPDIR the folder was computed from."""
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    tmpdir = tmp_path / "var-folders" / "T"
    tmpdir.mkdir(parents=True)
    monkeypatch.setenv("TMPDIR", f"{tmpdir}/")
    runtime = tmpdir / "agent-telemetry"

    dry = install(home=home, platform="darwin", uid=UID, dry_run=True)
    kinds = [(step.kind, step.path, step.argv[:2]) for step in dry.steps]
    made = kinds.index(("mkdir", runtime, ()))
    first_bootstrap = next(i for i, k in enumerate(kinds) if k[2] == ("launchctl", "bootstrap"))
    assert made < first_bootstrap
    assert dry.steps[made].mode == 0o700
    assert any(
        note.startswith(f"sockets: launchd holds {runtime}/ingest.sock") for note in dry.notes
    )
    assert "idle exit: after 15min with nothing to do the daemon exits" in " ".join(dry.notes)
    assert not runtime.exists()  # a dry run changes nothing

    install(home=home, platform="darwin", uid=UID)
    assert runtime.is_dir() and stat.S_IMODE(runtime.stat().st_mode) == 0o700
    plist = plistlib.loads((home / PLIST).read_bytes())
    paths = resolve_paths({"HOME": str(home), "TMPDIR": f"{tmpdir}/"}, "darwin")
    assert paths.runtime_dir == runtime
    assert plist["Sockets"]["ingest"]["SockPathName"] == str(paths.ingest_socket)
    assert plist["Sockets"]["api"]["SockPathName"] == str(paths.api_socket)
    assert plist["EnvironmentVariables"]["TMPDIR"] == f"{tmpdir}/"
    # The flush agent finds the same api.sock, whose connection starts the daemon.
    flush = plistlib.loads((home / FLUSH_PLIST).read_bytes())
    assert flush["EnvironmentVariables"]["TMPDIR"] == f"{tmpdir}/"
    assert "Sockets" not in flush


def test_install_notes_say_when_idle_exit_is_off(
    home: Path, manager: FakeManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENT_TELEMETRY_IDLE_EXIT", "off")
    plan = install(home=home, platform="darwin", uid=UID, dry_run=True)
    assert any(note.startswith("idle exit: off") for note in plan.notes)


def test_units_an_older_version_installed_are_named_with_the_command_that_updates_them(
    cli_home: Path, manager: FakeManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Units from an install before the upload timer existed and before the unit could
    reload: the manager keeps running them after the package is upgraded. `service status`
    and `doctor` said "not installed" (a file missing) instead of naming them; they now
    say which are out of date and that `service install` updates them."""
    runner = CliRunner()
    assert runner.invoke(service, ["install"]).exit_code == 0
    units = cli_home / UNIT_DIR
    for name in ("agent-telemetry-flush.service", "agent-telemetry-flush.timer"):
        (units / name).unlink()
    unit = units / "agent-telemetry.service"
    lines = unit.read_text().splitlines(keepends=True)
    unit.write_text("".join(line for line in lines if not line.startswith("ExecReload=")))
    monkeypatch.setenv("FAKE_SYSTEMCTL_SHOW", SHOW_RUNNING)

    shown = runner.invoke(service, ["status"]).output
    assert "update with: agent-telemetry service install" in shown
    assert "install with" not in shown
    data = json.loads(runner.invoke(service, ["status", "--json"]).output)
    assert sorted(Path(path).name for path in data["outdated"]) == [
        "agent-telemetry-flush.service",
        "agent-telemetry-flush.timer",
        "agent-telemetry.service",
    ]
    doctor = json.loads(runner.invoke(cli, ["doctor", "--json"]).output)
    (check,) = [c for c in doctor["checks"] if c["name"] == "service"]
    assert check["verdict"] == "warn" and "agent-telemetry.service" in check["detail"]
    assert "not installed" not in check["detail"]
    assert check["fix"].startswith("agent-telemetry service install")

    assert runner.invoke(service, ["install"]).exit_code == 0
    assert json.loads(runner.invoke(service, ["status", "--json"]).output)["outdated"] == []
    assert "ExecReload=" in unit.read_text()


def test_a_newer_versions_setting_in_the_config_leaves_the_others_in_the_units(
    home: Path, manager: FakeManager
) -> None:
    """A key this version does not know (a newer version's) does not stop the daemon, so
    install goes on; the units still carry what the rest of the config says."""
    config = home / ".config" / "agent-telemetry" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text('upload_interval = "15m"\nzqx_from_a_newer_version = true\n')
    install(home=home, platform="linux", uid=UID)
    assert timer_interval(home) == "900s"


def test_units_with_the_port_in_the_socket_unit_are_out_of_date(
    cli_home: Path, manager: FakeManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An older version listed 127.0.0.1:7468 in agent-telemetry.socket itself (a taken port
    then failed the Unix sockets too) and had no agent-telemetry-http.socket: status and
    doctor name those units, and `service install` writes the split ones."""
    runner = CliRunner()
    assert runner.invoke(service, ["install"]).exit_code == 0
    units = cli_home / UNIT_DIR
    (units / "agent-telemetry-http.socket").unlink()
    socket_unit = units / "agent-telemetry.socket"
    api_line = "ListenStream=%t/agent-telemetry/api.sock\n"
    socket_unit.write_text(
        socket_unit.read_text().replace(api_line, f"{api_line}ListenStream=127.0.0.1:7468\n")
    )
    monkeypatch.setenv("FAKE_SYSTEMCTL_SHOW", SHOW_RUNNING)

    data = json.loads(runner.invoke(service, ["status", "--json"]).output)
    assert sorted(Path(path).name for path in data["outdated"]) == [
        "agent-telemetry-http.socket",
        "agent-telemetry.socket",
    ]
    doctor = json.loads(runner.invoke(cli, ["doctor", "--json"]).output)
    (check,) = [c for c in doctor["checks"] if c["name"] == "service"]
    assert check["verdict"] == "warn" and "agent-telemetry-http.socket" in check["detail"]
    assert check["fix"].startswith("agent-telemetry service install")

    manager.clear()
    assert runner.invoke(service, ["install"]).exit_code == 0
    assert ["systemctl", "--user", "enable", "agent-telemetry-http.socket"] in manager.calls()
    assert json.loads(runner.invoke(service, ["status", "--json"]).output)["outdated"] == []
    assert "127.0.0.1" not in socket_unit.read_text()


def http_listen_stream(home: Path) -> list[str]:
    text = (home / UNIT_DIR / "agent-telemetry-http.socket").read_text()
    return [line for line in text.splitlines() if line.startswith("ListenStream=")]


def service_sockets(home: Path) -> list[str]:
    text = (home / UNIT_DIR / "agent-telemetry.service").read_text()
    return [line for line in text.splitlines() if line.startswith("Sockets=")]


def write_config(home: Path, text: str) -> None:
    config = home / ".config" / "agent-telemetry" / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(text)


def test_the_http_socket_unit_listens_on_the_configured_port(
    home: Path, manager: FakeManager
) -> None:
    """The port otel-env points exporters at (http_port, from the config, overridden by
    the service's env file) is the one systemd listens on; it was 7468 whatever they said.
    A port that moved since the last install is stopped (its unit keeps the old fds across
    daemon-reload) and the service restarted, which starts it again on the new port."""
    write_config(home, "http_port = 8123\n")
    install(home=home, platform="linux", uid=UID)
    assert http_listen_stream(home) == ["ListenStream=127.0.0.1:8123"]
    assert service_sockets(home) == ["Sockets=agent-telemetry.socket agent-telemetry-http.socket"]
    assert manager.calls()[1:] == [
        ["systemctl", "--user", "daemon-reload"],
        *(list(command) for command in ENABLE_COMMANDS),
    ]

    (home / ENV_FILE).write_text("AGENT_TELEMETRY_HTTP_PORT=8124\n")
    write_config(home, 'http_host = "::1"\nhttp_port = 8123\n')
    manager.clear()
    install(home=home, platform="linux", uid=UID)
    assert http_listen_stream(home) == ["ListenStream=[::1]:8124"]
    assert manager.calls()[1:] == [
        ["systemctl", "--user", "daemon-reload"],
        ["systemctl", "--user", "stop", "agent-telemetry-http.socket"],
        *(list(command) for command in ENABLE_COMMANDS),
        ["systemctl", "--user", "try-restart", "agent-telemetry.service"],
    ]

    # Installed as the config says: nothing to stop or restart on a second run.
    manager.clear()
    install(home=home, platform="linux", uid=UID)
    assert ["systemctl", "--user", "stop", "agent-telemetry-http.socket"] not in manager.calls()
    assert not any("try-restart" in call for call in manager.calls())


@pytest.mark.parametrize("port", ["off", "0"])
def test_without_a_port_install_removes_the_http_socket_unit_and_uninstall_the_rest(
    home: Path, manager: FakeManager, port: str
) -> None:
    """http_port = off, or 0 (any free port, which only the daemon can pick): systemd must
    not listen on 7468 and start the daemon for it. An earlier install's HTTP unit is
    stopped, disabled and removed, the service no longer names it, and the daemon running
    with its fd is restarted without it."""
    before = tree(home)
    install(home=home, platform="linux", uid=UID)
    http_unit = home / UNIT_DIR / "agent-telemetry-http.socket"
    assert http_unit.exists()

    write_config(home, f'http_port = "{port}"\n' if port == "off" else f"http_port = {port}\n")
    manager.clear()
    plan = install(home=home, platform="linux", uid=UID)
    assert not http_unit.exists()
    assert http_unit in plan.files  # as a removal: the CLI prints "removed: …"
    assert service_sockets(home) == ["Sockets=agent-telemetry.socket"]
    assert manager.calls()[1:] == [
        ["systemctl", "--user", "disable", "--now", "agent-telemetry-http.socket"],
        ["systemctl", "--user", "reset-failed", "agent-telemetry-http.socket"],
        ["systemctl", "--user", "daemon-reload"],
        ["systemctl", "--user", "enable", "--now", *STARTED],
        ["systemctl", "--user", "try-restart", "agent-telemetry.service"],
    ]
    assert service_status(home=home, platform="linux", uid=UID).outdated == []

    # A fresh install without a port never writes the unit; uninstall removes the rest.
    manager.clear()
    uninstall(home=home, platform="linux", uid=UID)
    assert tree(home) == before | {".config/agent-telemetry/config.toml"}
    manager.clear()
    plan = install(home=home, platform="linux", uid=UID)
    assert tree(home) == before | (LINUX_FILES - {f"{UNIT_DIR}/agent-telemetry-http.socket"}) | {
        ENV_FILE,
        ".config/agent-telemetry/config.toml",
    }
    assert not any("agent-telemetry-http.socket" in " ".join(c) for c in manager.calls())
    manager.clear()
    uninstall(home=home, platform="linux", uid=UID)
    remaining = [u for u in UNITS if u != "agent-telemetry-http.socket"]
    assert manager.calls()[0] == ["systemctl", "--user", "disable", "--now", *remaining]
    assert tree(home) == before | {".config/agent-telemetry/config.toml"}


SHOW_WITHOUT_HTTP = "\n\n".join(
    block for block in SHOW_RUNNING.split("\n\n") if "agent-telemetry-http.socket" not in block
)


def test_status_and_doctor_call_units_for_another_port_out_of_date(
    cli_home: Path, manager: FakeManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The config says one port, the installed unit another: status and doctor say which
    units are out of date and that `service install` updates them; turned off, the HTTP
    unit still installed is out of date, and once removed the rest is installed and
    enabled, with nothing missing."""
    runner = CliRunner()
    assert runner.invoke(service, ["install"]).exit_code == 0
    monkeypatch.setenv("FAKE_SYSTEMCTL_SHOW", SHOW_RUNNING)
    assert json.loads(runner.invoke(service, ["status", "--json"]).output)["outdated"] == []

    write_config(cli_home, "http_port = 8123\n")
    shown = runner.invoke(service, ["status"]).output
    assert "update with: agent-telemetry service install" in shown
    data = json.loads(runner.invoke(service, ["status", "--json"]).output)
    assert [Path(path).name for path in data["outdated"]] == ["agent-telemetry-http.socket"]
    doctor = json.loads(runner.invoke(cli, ["doctor", "--json"]).output)
    (check,) = [c for c in doctor["checks"] if c["name"] == "service"]
    assert check["verdict"] == "warn" and "agent-telemetry-http.socket" in check["detail"]
    assert check["fix"].startswith("agent-telemetry service install")

    write_config(cli_home, 'http_port = "off"\n')
    data = json.loads(runner.invoke(service, ["status", "--json"]).output)
    assert sorted(Path(path).name for path in data["outdated"]) == [
        "agent-telemetry-http.socket",
        "agent-telemetry.service",
    ]

    assert runner.invoke(service, ["install"]).exit_code == 0
    monkeypatch.setenv("FAKE_SYSTEMCTL_SHOW", SHOW_WITHOUT_HTTP)
    data = json.loads(runner.invoke(service, ["status", "--json"]).output)
    assert data["outdated"] == []
    assert data["installed"] and data["enabled"] and data["running"], data
    assert not any("agent-telemetry-http.socket" in path for path in data["files"])
    assert [u["name"] for u in data["units"]] == [
        n for n in ENABLED if n != "agent-telemetry-http.socket"
    ]
    doctor = json.loads(runner.invoke(cli, ["doctor", "--json"]).output)
    (check,) = [c for c in doctor["checks"] if c["name"] == "service"]
    assert check["verdict"] == "ok", check
