"""The service definitions: as shipped and as `service install` fills them in.

systemd must accept them (`systemd-analyze --user verify`), the plists must parse and run
the right command, and what install fills in (executable, environment file, carried
variables, socket folder, upload interval) must land where systemd and launchd read it.
"""

from __future__ import annotations

import configparser
import dataclasses
import os
import plistlib
import subprocess
from pathlib import Path

import pytest

from agent_telemetryd.paths import resolve_paths
from agent_telemetryd.service.activation import SOCKET_NAMES
from agent_telemetryd.service.install import find_executable
from agent_telemetryd.service.launchd_sockets import LAUNCHD_SOCKETS_VARIABLE
from agent_telemetryd.service.render import (
    FLUSH_PLIST_NAME,
    FLUSH_SERVICE,
    FLUSH_TIMER,
    HTTP_SOCKET_UNIT,
    LAUNCHD_TEMPLATES,
    PLIST_NAME,
    SERVICE_UNIT,
    SOCKET_UNIT,
    SYSTEMD_TEMPLATES,
    UnitSettings,
    render_flush_plist,
    render_flush_service,
    render_flush_timer,
    render_http_socket,
    render_launchd_plist,
    render_systemd_service,
    render_systemd_socket,
    systemd_units,
    template_text,
)
from tests.tools import required_tool

REPO = Path(__file__).resolve().parents[1]


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


def verify(
    *units: Path, runtime_dir: Path, home: Path | None = None
) -> subprocess.CompletedProcess[str]:
    # A user-mode verify needs a runtime dir to expand %t; the test's own keeps it off the
    # host. HOME is what %h expands to.
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime_dir)}
    if home is not None:
        env["HOME"] = str(home)
        env.pop("XDG_CONFIG_HOME", None)
    return subprocess.run(
        [required_tool("systemd", "systemd-analyze"), "verify", "--user", *map(str, units)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def settings_for(tmp_path: Path, executable: Path | None = None, **changes: object) -> UnitSettings:
    base = UnitSettings(
        executable=executable or find_executable(),
        env_file=tmp_path / "at-home" / "service.env",
        log_dir=tmp_path / "Library" / "Logs" / "agent-telemetry",
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def write_units(directory: Path, settings: UnitSettings) -> list[Path]:
    """The units install writes for `settings` (what systemd_units gives), in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    rendered = systemd_units(settings)
    for name, text in rendered.items():
        (directory / name).write_text(text)
    return [directory / name for name in rendered]


def our_warnings(result: subprocess.CompletedProcess[str]) -> list[str]:
    # Unknown keys and bad values are only warnings (exit 0); any line about our files fails.
    return [line for line in result.stderr.splitlines() if "agent-telemetry" in line]


@pytest.fixture
def runtime_dir(tmp_path: Path) -> Path:
    path = tmp_path / "run"
    path.mkdir(mode=0o700)
    return path


def test_top_level_copies_are_identical_to_the_package_templates() -> None:
    """systemd/ and launchd/ are what people read and copy; the package ships the same bytes."""
    for name in SYSTEMD_TEMPLATES:
        assert (REPO / "systemd" / name).read_text() == template_text(name), name
    for name in LAUNCHD_TEMPLATES:
        assert (REPO / "launchd" / name).read_text() == template_text(name), name
    assert sorted(p.name for p in (REPO / "systemd").iterdir()) == sorted(SYSTEMD_TEMPLATES)
    assert sorted(p.name for p in (REPO / "launchd").iterdir()) == sorted(LAUNCHD_TEMPLATES)


def test_shipped_units_pass_verify_for_a_pipx_install(tmp_path: Path, runtime_dir: Path) -> None:
    """Copied by hand from systemd/ into a home where pipx put ~/.local/bin/agent-telemetry,
    the units as shipped are valid; without that executable, verify says so."""
    home = tmp_path / "home"
    shipped = [REPO / "systemd" / name for name in SYSTEMD_TEMPLATES]

    missing = verify(*shipped, runtime_dir=runtime_dir, home=home)
    assert missing.returncode != 0
    assert f"{home}/.local/bin/agent-telemetry is not executable" in missing.stderr

    bin_dir = home / ".local" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "agent-telemetry").symlink_to(find_executable())
    result = verify(*shipped, runtime_dir=runtime_dir, home=home)
    assert result.returncode == 0, result.stderr
    assert our_warnings(result) == []


def test_shipped_units_run_the_pipx_executable_and_read_the_env_file() -> None:
    for name, command in ((SERVICE_UNIT, "daemon"), (FLUSH_SERVICE, "flush")):
        service = read_unit(template_text(name))["Service"]
        assert service["ExecStart"] == [f"%h/.local/bin/agent-telemetry {command}"]
        # %E is XDG_CONFIG_HOME: the daemon's own config folder on Linux.
        assert service["EnvironmentFile"] == ["-%E/agent-telemetry/service.env"]
    assert "@" not in "".join(template_text(n) for n in SYSTEMD_TEMPLATES).replace("@system", "")


def test_rendered_units_pass_systemd_analyze_verify(tmp_path: Path, runtime_dir: Path) -> None:
    """The real executable, a moved home and a short interval: systemd reports nothing."""
    settings = settings_for(
        tmp_path,
        environment={"AGENT_TELEMETRY_HOME": str(tmp_path / "at-home")},
        runtime_dir=tmp_path / "at-home" / "run",
        upload_interval=2.5,
    )
    result = verify(*write_units(tmp_path / "units", settings), runtime_dir=runtime_dir)
    assert result.returncode == 0, result.stderr
    assert our_warnings(result) == []


def test_verify_rejects_a_missing_executable(tmp_path: Path, runtime_dir: Path) -> None:
    """The check above has teeth: ExecStart pointing nowhere fails verification."""
    settings = settings_for(tmp_path, tmp_path / "gone" / "agent-telemetry")
    result = verify(*write_units(tmp_path / "units", settings), runtime_dir=runtime_dir)
    assert result.returncode != 0
    assert "is not executable" in result.stderr


def test_exec_path_with_space_percent_and_dollar_survives(
    tmp_path: Path, runtime_dir: Path
) -> None:
    """An install under e.g. "~/My Tools/100%$" still yields an ExecStart systemd can run."""
    odd_dir = tmp_path / "My Tools" / "100%$HOME"
    odd_dir.mkdir(parents=True)
    odd_executable = odd_dir / "agent-telemetry"
    odd_executable.symlink_to(find_executable())
    settings = settings_for(
        tmp_path, odd_executable, env_file=odd_dir / "service.env", environment={}
    )
    result = verify(*write_units(tmp_path / "units", settings), runtime_dir=runtime_dir)
    assert result.returncode == 0, result.stderr


def test_service_unit_contract(tmp_path: Path) -> None:
    home = tmp_path / "at home"
    settings = settings_for(
        tmp_path,
        env_file=home / "service.env",
        environment={"AGENT_TELEMETRY_HOME": str(home), "AGENT_TELEMETRY_CONFIG": "/c/x.toml"},
    )
    unit = read_unit(render_systemd_service(settings))
    service = unit["Service"]
    assert service["Type"] == ["notify"]
    assert service["Restart"] == ["on-failure"]
    assert service["ExecStart"] == [f"{settings.executable} daemon"]
    assert service["EnvironmentFile"] == [f"-{home}/service.env"]
    assert service["Environment"] == [
        "PYTHONUNBUFFERED=1",
        f'"AGENT_TELEMETRY_HOME={home}"',
        '"AGENT_TELEMETRY_CONFIG=/c/x.toml"',
    ]
    assert "agent-telemetry.socket" in unit["Unit"]["Requires"]
    # Both socket units' fds; the HTTP port's only wanted (Sockets= implies Wants=), never
    # required: a taken port must not keep the daemon from starting on its Unix sockets.
    assert service["Sockets"] == ["agent-telemetry.socket agent-telemetry-http.socket"]
    assert not any(HTTP_SOCKET_UNIT in line for line in unit["Unit"].get("Requires", []))
    assert not any(HTTP_SOCKET_UNIT in line for line in unit["Unit"].get("BindsTo", []))
    assert unit["Install"]["WantedBy"] == ["default.target"]
    # No watchdog by default: petting it would wake an idle daemon.
    assert "WatchdogSec" not in service


def test_flush_unit_runs_flush_with_the_daemon_settings(tmp_path: Path) -> None:
    home = tmp_path / "h"
    settings = settings_for(
        tmp_path, env_file=home / "service.env", environment={"AGENT_TELEMETRY_HOME": str(home)}
    )
    unit = read_unit(render_flush_service(settings))
    service = unit["Service"]
    assert service["Type"] == ["oneshot"]
    assert service["ExecStart"] == [f"{settings.executable} flush"]
    assert service["EnvironmentFile"] == [f"-{home}/service.env"]
    assert f'"AGENT_TELEMETRY_HOME={home}"' in service["Environment"]
    assert "Install" not in unit  # started by the timer, never enabled on its own


@pytest.mark.parametrize(
    ("interval", "every", "slack", "spread"),
    [
        (3600.0, "3600s", "60s", "300s"),
        (900.0, "900s", "60s", "90s"),
        (3.0, "3s", "300ms", "300ms"),
        (0.5, "500ms", "50ms", "50ms"),
    ],
)
def test_timer_fires_at_the_upload_interval(
    tmp_path: Path, interval: float, every: str, slack: str, spread: str
) -> None:
    timer = read_unit(render_flush_timer(settings_for(tmp_path, upload_interval=interval)))
    assert timer["Timer"] == {
        "OnActiveSec": [every],
        "OnUnitActiveSec": [every],
        "AccuracySec": [slack],
        "RandomizedDelaySec": [spread],
    }
    assert timer["Install"]["WantedBy"] == ["timers.target"]


def test_shipped_timer_is_the_default_interval() -> None:
    timer = read_unit(template_text(FLUSH_TIMER))["Timer"]
    assert timer["OnActiveSec"] == timer["OnUnitActiveSec"] == ["1h"]


def test_socket_unit_matches_the_daemon_paths_and_port(tmp_path: Path) -> None:
    """The sockets systemd binds are the ones the shims connect to and the daemon's default
    port, and api.sock is among them: a flush connecting there starts a stopped daemon. The
    port is in a unit of its own, so a taken port cannot stop the Unix sockets."""
    from agent_telemetry._paths import runtime_dir
    from agent_telemetryd.config import Config

    rendered = render_systemd_socket(settings_for(tmp_path))
    assert rendered == template_text(SOCKET_UNIT)
    sock = read_unit(rendered)["Socket"]
    default_port = next(f.default for f in dataclasses.fields(Config) if f.name == "http_port")
    run = runtime_dir({"XDG_RUNTIME_DIR": "%t"})
    assert sock["ListenStream"] == [f"{run}/ingest.sock", f"{run}/api.sock"]
    assert sock["SocketMode"] == ["0600"]
    assert sock["DirectoryMode"] == ["0700"]
    assert read_unit(rendered)["Install"]["WantedBy"] == ["sockets.target"]

    # The port is a unit of its own, which activates the daemon's service and is stopped
    # with the Unix sockets; install writes it as shipped.
    http = read_unit(render_http_socket(settings_for(tmp_path)))
    assert render_http_socket(settings_for(tmp_path)) == template_text(HTTP_SOCKET_UNIT)
    assert http["Socket"]["ListenStream"] == [f"127.0.0.1:{default_port}"]
    assert http["Socket"]["Service"] == [SERVICE_UNIT]
    assert http["Unit"]["PartOf"] == [SOCKET_UNIT]
    assert http["Install"]["WantedBy"] == ["sockets.target"]


@pytest.mark.parametrize(
    ("listen", "address"),
    [
        (("127.0.0.1", 8123), "127.0.0.1:8123"),
        (("127.0.0.2", 7468), "127.0.0.2:7468"),
        # systemd reads an IPv6 address with a port only in brackets.
        (("::1", 9000), "[::1]:9000"),
    ],
)
def test_http_socket_unit_listens_where_the_config_says(
    tmp_path: Path, runtime_dir: Path, listen: tuple[str, int], address: str
) -> None:
    """The port `otel-env` and the docs point exporters at (the config's http_host and
    http_port) is the one systemd listens on for the daemon; it was 7468 whatever the
    config said. systemd accepts the unit and reads back that address."""
    settings = settings_for(tmp_path, http_listen=listen)
    units = systemd_units(settings)
    http = read_unit(units[HTTP_SOCKET_UNIT])
    assert http["Socket"]["ListenStream"] == [address]
    assert http["Socket"]["Service"] == [SERVICE_UNIT]
    assert http["Unit"]["PartOf"] == [SOCKET_UNIT]
    assert read_unit(units[SERVICE_UNIT])["Service"]["Sockets"] == [
        f"{SOCKET_UNIT} {HTTP_SOCKET_UNIT}"
    ]
    # Only the one line differs from what is shipped.
    shipped = template_text(HTTP_SOCKET_UNIT).splitlines()
    changed = [
        b for a, b in zip(shipped, units[HTTP_SOCKET_UNIT].splitlines(), strict=True) if a != b
    ]
    assert changed == [f"ListenStream={address}"]

    result = verify(*write_units(tmp_path / "units", settings), runtime_dir=runtime_dir)
    assert result.returncode == 0, result.stderr
    assert our_warnings(result) == []


def test_without_a_loopback_port_there_is_no_http_socket_unit(
    tmp_path: Path, runtime_dir: Path
) -> None:
    """http_port = off, or 0 (a port only the daemon can pick; settings make both None):
    no HTTP socket unit to listen and start the daemon, and the service takes its fds from
    agent-telemetry.socket alone, which systemd accepts without the other unit there."""
    settings = settings_for(tmp_path, http_listen=None)
    units = systemd_units(settings)
    assert list(units) == [SOCKET_UNIT, SERVICE_UNIT, FLUSH_SERVICE, FLUSH_TIMER]
    service = read_unit(units[SERVICE_UNIT])
    assert service["Service"]["Sockets"] == [SOCKET_UNIT]
    assert service["Unit"]["Requires"] == [SOCKET_UNIT]
    with pytest.raises(ValueError, match=r"no agent-telemetry-http\.socket"):
        render_http_socket(settings)

    result = verify(*write_units(tmp_path / "units", settings), runtime_dir=runtime_dir)
    assert result.returncode == 0, result.stderr
    assert our_warnings(result) == []


def test_a_port_the_manager_would_pick_is_refused(tmp_path: Path) -> None:
    """Port 0 in a unit would have systemd or launchd pick a port nobody could be told."""
    with pytest.raises(ValueError, match="1-65535"):
        settings_for(tmp_path, http_listen=("127.0.0.1", 0))


def test_socket_unit_follows_a_moved_runtime_dir(tmp_path: Path) -> None:
    """With AGENT_TELEMETRY_HOME the daemon and CLI use HOME/run/; the socket unit too."""
    from agent_telemetryd.paths import resolve_paths

    home = tmp_path / "100%home"
    paths = resolve_paths({"AGENT_TELEMETRY_HOME": str(home)})
    sock = read_unit(render_systemd_socket(settings_for(tmp_path, runtime_dir=paths.runtime_dir)))
    escaped = str(paths.runtime_dir).replace("%", "%%")
    assert sock["Socket"]["ListenStream"][:2] == [
        f"{escaped}/ingest.sock",
        f"{escaped}/api.sock",
    ]


def test_unit_files_parse_as_ini(tmp_path: Path) -> None:
    """A cheap guard that also runs where systemd-analyze is missing (e.g. on macOS)."""
    for path in write_units(tmp_path / "units", settings_for(tmp_path)):
        parser = configparser.ConfigParser(strict=False, interpolation=None)
        parser.read_string(path.read_text())
        assert parser.sections()


def fake_pipx_home(tmp_path: Path) -> Path:
    """A home whose ~/.local/bin/agent-telemetry records how it was called."""
    home = tmp_path / "mac home"
    program = home / ".local" / "bin" / "agent-telemetry"
    program.parent.mkdir(parents=True)
    program.write_text(
        '#!/bin/sh\nprintf "%s\\n" "$@" > "$HOME/called-with"\necho "output of $1 $2 $3 $4"\n'
    )
    program.chmod(0o755)
    return home


@pytest.mark.parametrize(("name", "command"), [(PLIST_NAME, "daemon"), (FLUSH_PLIST_NAME, "flush")])
def test_shipped_plists_run_the_pipx_executable(tmp_path: Path, name: str, command: str) -> None:
    """launchd expands no "~": the shipped plists go through /bin/sh, which expands $HOME.
    Run exactly their ProgramArguments with a home like the one launchd gives an agent."""
    plist = plistlib.loads((REPO / "launchd" / name).read_bytes())
    home = fake_pipx_home(tmp_path)
    env = {"HOME": str(home), "PATH": "/usr/bin:/bin"}
    subprocess.run(plist["ProgramArguments"], env=env, check=True, timeout=30)
    env_file = home / "Library" / "Application Support" / "agent-telemetry" / "service.env"
    assert (home / "called-with").read_text().splitlines() == ["--env-file", str(env_file), command]
    log = home / "Library" / "Logs" / "agent-telemetry" / f"{command}.log"
    assert log.read_text().startswith("output of --env-file")


def test_rendered_plist_runs_the_executable_without_a_shell(tmp_path: Path) -> None:
    settings = settings_for(
        tmp_path, environment={"AGENT_TELEMETRY_HOME": str(tmp_path / "R&D <home>")}
    )
    plist = plistlib.loads(render_launchd_plist(settings).encode())
    assert plist["Label"] == "dev.agent-telemetry.daemon"
    assert plist["ProgramArguments"] == [
        str(settings.executable),
        "--env-file",
        str(settings.env_file),
        "daemon",
    ]
    assert Path(plist["ProgramArguments"][0]).exists()
    assert plist["RunAtLoad"] is True
    # Restart after a crash, not after a clean stop.
    assert plist["KeepAlive"] == {"SuccessfulExit": False}
    assert plist["ProcessType"] == "Background"
    log = str(settings.log_dir / "daemon.log") if settings.log_dir else ""
    assert plist["StandardOutPath"] == plist["StandardErrorPath"] == log
    assert plist["Umask"] == 0o077
    assert plist["EnvironmentVariables"] == {
        "PYTHONUNBUFFERED": "1",
        "AGENT_TELEMETRY_HOME": str(tmp_path / "R&D <home>"),
    }


def test_rendered_flush_plist_runs_flush_every_interval(tmp_path: Path) -> None:
    plist = plistlib.loads(render_flush_plist(settings_for(tmp_path, upload_interval=900)).encode())
    assert plist["Label"] == "dev.agent-telemetry.flush"
    assert plist["ProgramArguments"][-1] == "flush"
    assert plist["StartInterval"] == 900
    assert plist["RunAtLoad"] is False
    tiny = render_flush_plist(settings_for(tmp_path, upload_interval=0.2))
    assert plistlib.loads(tiny.encode())["StartInterval"] == 1


def test_relative_paths_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="absolute"):
        settings_for(tmp_path, Path("bin/agent-telemetry"))
    with pytest.raises(ValueError, match="absolute"):
        settings_for(tmp_path, env_file=Path("service.env"))


def test_rendered_plist_holds_the_sockets_the_daemon_asks_launchd_for(tmp_path: Path) -> None:
    """launchd binds what `Sockets` names; the daemon asks for SOCKET_NAMES: the same keys,
    at the paths the daemon, the shims and the CLI compute, private to the user."""
    paths = resolve_paths({"AGENT_TELEMETRY_HOME": str(tmp_path / "at")}, "darwin")
    plist = plistlib.loads(
        render_launchd_plist(settings_for(tmp_path, runtime_dir=paths.runtime_dir)).encode()
    )
    sockets = plist["Sockets"]
    assert sorted(sockets) == sorted(SOCKET_NAMES)
    assert sockets["ingest"]["SockPathName"] == str(paths.ingest_socket)
    assert sockets["api"]["SockPathName"] == str(paths.api_socket)
    for name in ("ingest", "api"):
        assert sockets[name]["SockPathMode"] == 0o600 == 384  # plists have no octal
        assert sockets[name]["SockType"] == "stream"
    # What agent-telemetry.socket listens on, loopback only.
    assert sockets["http"] == {
        "SockType": "stream",
        "SockNodeName": "127.0.0.1",
        "SockServiceName": "7468",
        "SockFamily": "IPv4",
    }
    assert plist["EnvironmentVariables"][LAUNCHD_SOCKETS_VARIABLE] == "1"
    # Started on demand: a clean (idle) exit is not restarted, a crash is.
    assert plist["KeepAlive"] == {"SuccessfulExit": False}


def test_rendered_plist_follows_the_configured_loopback_port(tmp_path: Path) -> None:
    def sockets(listen: tuple[str, int] | None) -> dict[str, dict[str, object]]:
        settings = settings_for(tmp_path, runtime_dir=tmp_path / "run", http_listen=listen)
        return plistlib.loads(render_launchd_plist(settings).encode())["Sockets"]

    assert "http" not in sockets(None)  # TCP off, or a port the daemon picks itself
    assert sockets(("::1", 9000))["http"]["SockFamily"] == "IPv6"
    assert sockets(("::1", 9000))["http"]["SockServiceName"] == "9000"


@pytest.mark.parametrize("copy", ["launchd", "rendered without a runtime folder"])
def test_a_plist_without_sockets_leaves_the_daemon_binding_its_own(
    tmp_path: Path, copy: str
) -> None:
    """launchd expands no $TMPDIR, so the shipped plist cannot name the user's socket
    folder: it holds no sockets and does not tell the daemon to ask launchd for any."""
    if copy == "launchd":
        plist = plistlib.loads((REPO / "launchd" / PLIST_NAME).read_bytes())
    else:
        plist = plistlib.loads(render_launchd_plist(settings_for(tmp_path)).encode())
    assert "Sockets" not in plist
    assert LAUNCHD_SOCKETS_VARIABLE not in plist["EnvironmentVariables"]
    assert plist["KeepAlive"] == {"SuccessfulExit": False}
