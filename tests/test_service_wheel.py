"""A wheel built from the checkout, installed into a fresh venv, is a working agent-telemetry.

The wheel is built from a copy of the checkout's files (tracked, plus new ones not ignored)
with `python -m build --wheel --no-isolation`, so nothing is downloaded. The fresh venv gets
the wheel alone (`pip install --no-deps --no-index`); its third-party dependencies come from
this venv's site-packages through a plain path in a .pth file, which does not run this venv's
editable-install hook, so `agent_telemetryd` can only come from the wheel (checked).
"""

from __future__ import annotations

import http.client
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent_telemetryd.cli.api_client import ApiClient
from agent_telemetryd.dashboard.page import SCRIPTS, STYLES
from tests.conftest import DaemonFactory
from tests.test_service_install import FAKE_MANAGER

REPO = Path(__file__).resolve().parents[1]
# Where each importable package's files live in the checkout.
PACKAGE_ROOTS = {
    "agent_telemetryd": REPO / "daemon" / "agent_telemetryd",
    "agent_telemetry": REPO / "client_shim" / "agent_telemetry",
    "agent_telemetry_server": REPO / "server" / "agent_telemetry_server",
}
# A data file in a subpackage that does not exist yet (as the price table's was once): the
# package-data glob must take it without anyone remembering to list it.
PROBE = "agent_telemetryd/package_data_probe/package-data-probe.json"
ASSETS = REPO / "daemon" / "agent_telemetryd" / "dashboard" / "assets"


@dataclass(frozen=True)
class Installed:
    wheel: Path
    venv: Path

    @property
    def program(self) -> Path:
        return self.venv / "bin" / "agent-telemetry"

    @property
    def version(self) -> str:
        return self.wheel.name.split("-")[1]

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
        return {**env, **extra}


def checkout_files() -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.decode()
    return [name for name in listed.split("\0") if name and (REPO / name).is_file()]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    root = tmp_path_factory.mktemp("wheel")
    source = root / "source"
    for name in checkout_files():
        target = source / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, target)
    probe = source / "daemon" / PROBE
    probe.parent.mkdir(parents=True)
    probe.write_text('{"probe": true}\n')

    dist = root / "dist"
    build = [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(dist)]
    subprocess.run([*build, str(source)], capture_output=True, check=True, timeout=300)
    [wheel] = dist.glob("agent_telemetry-*-py3-none-any.whl")

    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    pip = [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python")]
    subprocess.run(
        [*pip, "install", "--no-deps", "--no-index", "--quiet", str(wheel)],
        check=True,
        timeout=300,
    )
    fresh_site = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import sysconfig; print(sysconfig.get_path('purelib'))",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    ours = {sysconfig.get_path("purelib"), sysconfig.get_path("platlib")}
    (Path(fresh_site) / "dependencies_from_the_test_venv.pth").write_text("\n".join(ours) + "\n")
    yield Installed(wheel, venv)


def test_the_wheel_holds_every_data_file_of_the_packages(installed: Installed) -> None:
    """Dashboard assets, service templates, server migrations: every non-Python file in
    the packages' folders is in the wheel, and so is a JSON table added in a new subfolder."""
    with zipfile.ZipFile(installed.wheel) as wheel:
        names = set(wheel.namelist())
    expected = {PROBE}
    for name in checkout_files():
        path = REPO / name
        for package, folder in PACKAGE_ROOTS.items():
            if path.is_relative_to(folder) and path.suffix not in (".py", ".pyc"):
                expected.add(f"{package}/{path.relative_to(folder)}")
    assert expected - names == set()
    assert "agent_telemetryd/dashboard/assets/uPlot.iife.min.js" in expected
    assert "agent_telemetryd/service/templates/agent-telemetry-flush.timer" in expected


def test_the_installed_program_comes_from_the_wheel(installed: Installed, tmp_path: Path) -> None:
    where = subprocess.run(
        [
            str(installed.venv / "bin" / "python"),
            "-c",
            "import agent_telemetryd, agent_telemetry; "
            "print(agent_telemetryd.__file__); print(agent_telemetry.__file__)",
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,  # not the checkout: nothing importable by accident
        env=installed.env(),
    ).stdout.split()
    assert all(Path(path).is_relative_to(installed.venv) for path in where), where
    version = subprocess.run(
        [str(installed.program), "--version"],
        capture_output=True,
        text=True,
        check=True,
        env=installed.env(),
    )
    assert version.stdout == f"agent-telemetry, version {installed.version}\n"


def test_the_daemon_from_the_wheel_serves_the_dashboard_assets(
    installed: Installed, daemon_factory: DaemonFactory
) -> None:
    daemon = daemon_factory(start=False)
    daemon.program = str(installed.program)
    daemon.env.pop("PYTHONPATH", None)
    daemon.start()
    tcp = http.client.HTTPConnection(daemon.http_url().removeprefix("http://"), timeout=30)
    for name in (*SCRIPTS, *STYLES):  # every script of the page is in the wheel
        on_socket = ApiClient(daemon.api_socket).request("GET", f"/dashboard/assets/{name}")
        assert on_socket.status == 200, name
        assert on_socket.read() == (ASSETS / name).read_bytes(), name
        # Assets carry no data and need no token on the TCP port either.
        tcp.request("GET", f"/dashboard/assets/{name}")
        answer = tcp.getresponse()
        assert answer.status == 200, name
        assert answer.read() == (ASSETS / name).read_bytes(), name
    tcp.close()
    page = ApiClient(daemon.api_socket).request("GET", "/dashboard")
    assert page.status == 200 and b"uPlot" in page.read()


def test_service_install_dry_run_from_the_wheel_renders_the_units(
    installed: Installed, tmp_path: Path
) -> None:
    fake_bin = tmp_path / "fakebin"
    fake_bin.mkdir()
    systemctl = fake_bin / "systemctl"
    systemctl.write_text(FAKE_MANAGER.format(python=sys.executable))
    systemctl.chmod(0o755)
    home = tmp_path / "home"
    at_home = tmp_path / "at"
    env = installed.env(
        HOME=str(home),
        XDG_RUNTIME_DIR=str(tmp_path / "run"),
        PATH=f"{fake_bin}{os.pathsep}{os.environ['PATH']}",
        FAKE_MANAGER_LOG=str(tmp_path / "calls.ndjson"),
        AGENT_TELEMETRY_HOME=str(at_home),
    )
    env.pop("XDG_CONFIG_HOME", None)
    result = subprocess.run(
        [str(installed.program), "service", "install", "--dry-run"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    lines = [line.strip() for line in result.stdout.splitlines()]
    unit_dir = home / ".config" / "systemd" / "user"
    for unit in (
        "agent-telemetry.socket",
        "agent-telemetry.service",
        "agent-telemetry-flush.service",
        "agent-telemetry-flush.timer",
    ):
        assert f"would write: {unit_dir / unit}" in lines
    assert f"ExecStart={installed.program} daemon" in lines
    assert f"ExecStart={installed.program} flush" in lines
    assert lines.count(f'Environment="AGENT_TELEMETRY_HOME={at_home}"') == 2
    assert lines.count(f"EnvironmentFile=-{at_home}/service.env") == 2
    assert not home.exists() and not at_home.exists()
