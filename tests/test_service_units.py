"""The shipped service definitions: systemd accepts them, the plist parses, paths are real."""

from __future__ import annotations

import configparser
import dataclasses
import os
import plistlib
import shutil
import subprocess
from pathlib import Path

import pytest

from agent_telemetryd.service.install import find_executable
from agent_telemetryd.service.render import (
    PLIST_NAME,
    SERVICE_UNIT,
    SOCKET_UNIT,
    render_launchd_plist,
    render_systemd_service,
    render_systemd_socket,
    template_text,
)

REPO = Path(__file__).resolve().parents[1]
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
needs_systemd_analyze = pytest.mark.skipif(
    SYSTEMD_ANALYZE is None, reason="systemd-analyze not installed (apt-get install systemd)"
)


def read_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """A unit file as {section: {key: [values in order]}} (keys may repeat in systemd)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key, []).append(value)
    return sections


def verify(*units: Path, runtime_dir: Path) -> subprocess.CompletedProcess[str]:
    assert SYSTEMD_ANALYZE is not None
    # A user-mode verify needs a runtime dir to expand %t; the test's own keeps it off the host.
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime_dir)}
    return subprocess.run(
        [SYSTEMD_ANALYZE, "verify", "--user", *map(str, units)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def write_units(directory: Path, executable: Path) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    socket_file = directory / SOCKET_UNIT
    service_file = directory / SERVICE_UNIT
    socket_file.write_text(render_systemd_socket())
    service_file.write_text(render_systemd_service(executable))
    return socket_file, service_file


@pytest.fixture
def runtime_dir(tmp_path: Path) -> Path:
    path = tmp_path / "run"
    path.mkdir(mode=0o700)
    return path


def test_top_level_copies_are_identical_to_the_package_templates() -> None:
    """systemd/ and launchd/ are what people read in the repo; the package ships the same bytes."""
    for name, folder in (
        (SERVICE_UNIT, "systemd"),
        (SOCKET_UNIT, "systemd"),
        (PLIST_NAME, "launchd"),
    ):
        assert (REPO / folder / name).read_text() == template_text(name), name


@needs_systemd_analyze
def test_rendered_units_pass_systemd_analyze_verify(tmp_path: Path, runtime_dir: Path) -> None:
    """The real executable in ExecStart: systemd-analyze reports nothing at all."""
    socket_file, service_file = write_units(tmp_path / "units", find_executable())
    result = verify(socket_file, service_file, runtime_dir=runtime_dir)
    assert result.returncode == 0, result.stderr
    # Unknown keys and bad values are only warnings (exit 0); any line about our files fails.
    ours = [line for line in result.stderr.splitlines() if "agent-telemetry" in line]
    assert ours == []


@needs_systemd_analyze
def test_verify_rejects_a_missing_executable(tmp_path: Path, runtime_dir: Path) -> None:
    """The check above has teeth: ExecStart pointing nowhere fails verification."""
    socket_file, service_file = write_units(
        tmp_path / "units", tmp_path / "gone" / "agent-telemetry"
    )
    result = verify(socket_file, service_file, runtime_dir=runtime_dir)
    assert result.returncode != 0
    assert "is not executable" in result.stderr


@needs_systemd_analyze
def test_exec_path_with_space_percent_and_dollar_survives(
    tmp_path: Path, runtime_dir: Path
) -> None:
    """An install under e.g. "~/My Tools/100%$" still yields an ExecStart systemd can run."""
    odd_dir = tmp_path / "My Tools" / "100%$HOME"
    odd_dir.mkdir(parents=True)
    odd_executable = odd_dir / "agent-telemetry"
    odd_executable.symlink_to(find_executable())
    socket_file, service_file = write_units(tmp_path / "units", odd_executable)
    result = verify(socket_file, service_file, runtime_dir=runtime_dir)
    assert result.returncode == 0, result.stderr


def test_service_unit_contract() -> None:
    executable = find_executable()
    unit = read_unit(render_systemd_service(executable))
    service = unit["Service"]
    assert service["Type"] == ["notify"]
    assert service["Restart"] == ["on-failure"]
    exec_start = service["ExecStart"][0].split()
    assert exec_start == [str(executable), "daemon"]
    assert Path(exec_start[0]).is_absolute() and Path(exec_start[0]).exists()
    assert "agent-telemetry.socket" in unit["Unit"]["Requires"]
    assert unit["Install"]["WantedBy"] == ["default.target"]
    # No watchdog by default: petting it would wake an idle daemon.
    assert "WatchdogSec" not in service


def test_socket_unit_matches_the_daemon_paths_and_port() -> None:
    """The sockets systemd binds are the ones the shims connect to and the daemon's default port."""
    from agent_telemetry._paths import runtime_dir
    from agent_telemetryd.config import Config

    sock = read_unit(render_systemd_socket())["Socket"]
    default_port = next(f.default for f in dataclasses.fields(Config) if f.name == "http_port")
    run = runtime_dir({"XDG_RUNTIME_DIR": "%t"})
    assert sock["ListenStream"] == [
        f"{run}/ingest.sock",
        f"{run}/api.sock",
        f"127.0.0.1:{default_port}",
    ]
    assert sock["SocketMode"] == ["0600"]
    assert sock["DirectoryMode"] == ["0700"]
    assert read_unit(render_systemd_socket())["Install"]["WantedBy"] == ["sockets.target"]


def test_unit_files_parse_as_ini() -> None:
    """A cheap guard that also runs where systemd-analyze is missing (e.g. on macOS)."""
    for text in (render_systemd_service(find_executable()), render_systemd_socket()):
        parser = configparser.ConfigParser(strict=False, interpolation=None)
        parser.read_string(text)
        assert parser.sections()


def test_plist_parses_and_has_the_required_keys(tmp_path: Path) -> None:
    executable = find_executable()
    logs = tmp_path / "Library" / "Logs" / "agent-telemetry"
    plist = plistlib.loads(render_launchd_plist(executable, logs).encode())
    assert plist["Label"] == "dev.agent-telemetry.daemon"
    program = plist["ProgramArguments"]
    assert program == [str(executable), "daemon"]
    assert Path(program[0]).is_absolute() and Path(program[0]).exists()
    assert plist["RunAtLoad"] is True
    # Restart after a crash, not after a clean stop.
    assert plist["KeepAlive"] == {"SuccessfulExit": False}
    assert plist["ProcessType"] == "Background"
    assert plist["StandardOutPath"] == str(logs / "daemon.log")
    assert plist["StandardErrorPath"] == str(logs / "daemon.log")
    assert plist["Umask"] == 0o077


def test_plist_escapes_xml_in_paths(tmp_path: Path) -> None:
    odd = tmp_path / "R&D <tools>" / "agent-telemetry"
    plist = plistlib.loads(render_launchd_plist(odd, tmp_path / "logs").encode())
    assert plist["ProgramArguments"][0] == str(odd)


def test_relative_paths_are_refused() -> None:
    with pytest.raises(ValueError, match="absolute"):
        render_systemd_service(Path("bin/agent-telemetry"))
    with pytest.raises(ValueError, match="absolute"):
        render_launchd_plist(Path("/usr/bin/agent-telemetry"), Path("logs"))
