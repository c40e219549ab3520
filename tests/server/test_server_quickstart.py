"""`agent-telemetry-server quickstart` as an ordinary user: a private cluster, keys, a
healthy server; its printed settings make a real daemon's `flush` land there; a second
run reuses cluster, data and keys; `stop` ends it. As root it refuses, naming a user."""

from __future__ import annotations

import json
import os
import pwd
import queue
import shutil
import signal
import subprocess
import tempfile
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from server_helpers import SERVER_SCRIPT, server_env

from agent_telemetry_server import quickstart
from agent_telemetry_server.testing import ensure_system_user, free_port, temp_base_for
from tests.fakes import upload_helpers

QUICKSTART_USER = "at-quickstart"
DONE_LINE = "Ctrl-C stops the server"


@pytest.fixture(scope="module")
def user() -> pwd.struct_passwd:
    """An ordinary user to run quickstart as: this one, or (as root) a system user."""
    if os.geteuid() != 0:
        return pwd.getpwuid(os.geteuid())
    ensure_system_user(QUICKSTART_USER)
    return pwd.getpwnam(QUICKSTART_USER)


def as_user(user: pwd.struct_passwd, *args: str) -> list[str]:
    if os.geteuid() != 0:
        return list(args)
    return ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--init-groups", *args]


@pytest.fixture
def data_dir(user: pwd.struct_passwd) -> Iterator[Path]:
    """A temporary folder the user owns, in a place the user can reach."""
    folder = Path(tempfile.mkdtemp(prefix="at-qs-", dir=temp_base_for(user.pw_uid)))
    os.chown(folder, user.pw_uid, user.pw_gid)
    try:
        yield folder / "backend"
    finally:
        if (folder / "backend" / "pgdata").exists():
            subprocess.run(
                as_user(user, SERVER_SCRIPT, "stop", "--data-dir", str(folder / "backend")),
                capture_output=True,
                timeout=60,
            )
        shutil.rmtree(folder, ignore_errors=True)


class Quickstart:
    """A running `quickstart`, its printed lines read as they come."""

    def __init__(self, user: pwd.struct_passwd, data_dir: Path, port: int) -> None:
        self.stderr = (data_dir.parent / f"quickstart-{port}.log").open("wb")
        self.proc = subprocess.Popen(
            as_user(user, SERVER_SCRIPT, "quickstart", "--data-dir", str(data_dir),
                    "--port", str(port)),
            stdout=subprocess.PIPE, stderr=self.stderr, text=True,
            env=server_env(HOME=str(data_dir.parent)),
        )  # fmt: skip
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.url = f"http://127.0.0.1:{port}"

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def announcement(self, timeout: float = 120) -> list[str]:
        """Every line up to and including the last one of the announcement."""
        got: list[str] = []
        while True:
            line = self.lines.get(timeout=timeout)
            if line is None:
                raise AssertionError(f"quickstart ended: {got} {self.log()}")
            got.append(line)
            if line.startswith(DONE_LINE):
                return got

    def log(self) -> str:
        self.stderr.flush()
        return Path(self.stderr.name).read_text()[-3000:]

    def finish(self) -> int:
        code = self.proc.wait(timeout=60)
        self.stderr.close()
        return code


def get(url: str, key: str | None = None) -> Any:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as r:
        return json.loads(r.read())


def exports(lines: list[str]) -> dict[str, str]:
    pairs = [line.strip().removeprefix("export ").split("=", 1) for line in lines]
    return {k: v for k, v in (p for p in pairs if len(p) == 2) if k.isupper()}


def key_after(lines: list[str], label: str) -> str:
    return next(line.split(":", 1)[1].strip() for line in lines if line.strip().startswith(label))


@pytest.mark.timeout(300)
def test_quickstart_then_daemon_flush_then_rerun_reuses_it(
    user: pwd.struct_passwd, data_dir: Path, daemon_factory: Any
) -> None:
    port = free_port()
    first = Quickstart(user, data_dir, port)
    lines = first.announcement()
    assert f"agent-telemetry-server is serving at {first.url}" in lines
    assert any("cluster made" in line for line in lines)
    read_key = key_after(lines, "read key:")
    settings = exports(lines)
    assert settings == {
        "AGENT_TELEMETRY_SENDER": "http",
        "TELEMETRY_ENDPOINT": first.url,
        "TELEMETRY_API_KEY": key_after(lines, "ingest key:"),
    }
    health = get(f"{first.url}/api/v1/telemetry/health")
    assert (health["status"], health["storage"]) == ("ok", "plain")

    # The settings as printed, applied to a real daemon: enable, flush, and they land.
    daemon = daemon_factory({**upload_helpers.FAST, **settings})
    daemon.cli("enable")
    upload_helpers.post_events(daemon, 30, agent="quickstart-test")
    report = upload_helpers.flush_json(daemon)
    assert (report["exit_code"], report["events_sent"]) == (0, 30), (report, first.log())
    stats = get(f"{first.url}/api/v1/telemetry/stats?days=2", read_key)
    assert (stats["events"], stats["unique_anonymous_ids"]) == (30, 1)

    # Private files, owned by the user who ran it; the cluster is theirs too.
    for name in ("server.toml", "daemon.env"):
        info = (data_dir / name).stat()
        assert (oct(info.st_mode & 0o777), info.st_uid) == ("0o600", user.pw_uid), name
    assert (data_dir / "pgdata").stat().st_uid == user.pw_uid
    assert (data_dir / "run" / ".s.PGSQL.5432").exists()

    # SIGTERM: the server stops, and the cluster with it.
    first.proc.send_signal(signal.SIGTERM)
    assert first.finish() == 0
    assert not (data_dir / "run" / ".s.PGSQL.5432").exists()

    # Again: the same cluster, data and keys; nothing new printed about keys.
    second = Quickstart(user, data_dir, port)
    again = second.announcement()
    assert any("cluster reused" in line for line in again)
    assert any(line.startswith("Keys unchanged") for line in again)
    assert read_key not in "\n".join(again)
    assert get(f"{second.url}/api/v1/telemetry/stats?days=2", read_key)["events"] == 30
    upload_helpers.post_events(daemon, 5, agent="quickstart-test")
    assert upload_helpers.flush_json(daemon)["events_sent"] == 5
    assert get(f"{second.url}/api/v1/telemetry/stats?days=2", read_key)["events"] == 35

    stopped = subprocess.run(
        as_user(user, SERVER_SCRIPT, "stop", "--data-dir", str(data_dir)),
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stdout.startswith("stopped the server")
    assert second.finish() == 0
    assert not (data_dir / "run" / ".s.PGSQL.5432").exists()


def test_root_is_refused_with_the_user_to_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, user: pwd.struct_passwd
) -> None:
    owned = tmp_path / "owned"
    owned.mkdir()
    if os.geteuid() == 0:
        os.chown(owned, user.pw_uid, user.pw_gid)
    monkeypatch.setattr(quickstart.os, "geteuid", lambda: 0)
    with pytest.raises(quickstart.QuickstartError, match="run it as alice") as sudo:
        quickstart.refuse_root(tmp_path / "backend", {"SUDO_USER": "alice"})
    assert "\n" not in str(sudo.value)
    # Without sudo: the owner of the folder (or of its closest existing parent).
    with pytest.raises(quickstart.QuickstartError, match=f"run it as {user.pw_name} "):
        quickstart.refuse_root(owned / "backend", {})


def test_the_real_command_as_root_says_which_user(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("only root can show the refusal for real; the unit test above covers it")
    result = subprocess.run(
        [SERVER_SCRIPT, "quickstart", "--data-dir", str(tmp_path / "backend")],
        capture_output=True, text=True, timeout=60, env=server_env(SUDO_USER="alice"),
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "Error: quickstart runs PostgreSQL, which refuses to run as root: run it as alice"
        f" (e.g. runuser -u alice -- agent-telemetry-server quickstart --data-dir"
        f" {tmp_path / 'backend'})"
    ]
    assert not (tmp_path / "backend").exists()


def _quickstart(user: pwd.struct_passwd, data_dir: Path, *flags: str) -> list[str]:
    """Run quickstart as `user` where it must refuse at once; its stderr lines."""
    result = subprocess.run(
        as_user(user, SERVER_SCRIPT, "quickstart", "--data-dir", str(data_dir), *flags),
        capture_output=True, text=True, timeout=120, env=server_env(HOME=str(data_dir.parent)),
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    return result.stderr.strip().splitlines()


def test_a_port_that_cannot_exist_is_refused_before_anything_is_made(
    user: pwd.struct_passwd, data_dir: Path
) -> None:
    for port in ("99999", "-5", "0"):
        assert _quickstart(user, data_dir, "--port", port) == [
            f"Error: port {port}: must be from 1 to 65535"
        ]
        # No cluster, and above all no server.toml that would fail every later run.
        assert not data_dir.exists()

    # A server.toml that already holds such a port (an older version wrote what it was
    # given): the file is named, and no cluster is made.
    data_dir.mkdir(mode=0o700)
    config = data_dir / "server.toml"
    config.write_text("port = 99999\n")
    config.chmod(0o600)
    for path in (data_dir, config):
        os.chown(path, user.pw_uid, user.pw_gid)
    assert _quickstart(user, data_dir) == [f"Error: {config}: port 99999: must be from 1 to 65535"]
    assert sorted(p.name for p in data_dir.iterdir()) == ["server.toml"]


def test_stop_as_root_says_to_run_stop_not_quickstart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, user: pwd.struct_passwd
) -> None:
    """Suggesting `quickstart` to someone who asked to stop would start it instead."""
    monkeypatch.setattr(quickstart.os, "geteuid", lambda: 0)
    monkeypatch.setenv("SUDO_USER", "alice")
    with pytest.raises(quickstart.QuickstartError) as named:
        quickstart.stop(tmp_path / "backend")
    assert str(named.value) == (
        "stop uses PostgreSQL's pg_ctl, which refuses to run as root: run it as alice"
        f" (e.g. runuser -u alice -- agent-telemetry-server stop --data-dir {tmp_path / 'backend'})"
    )
    # Nobody to name (no sudo, only root's folders): no command that would start anything.
    monkeypatch.delenv("SUDO_USER")
    with pytest.raises(quickstart.QuickstartError) as unnamed:
        quickstart.stop(Path("/no-such-folder-at-test/backend"))
    assert str(unnamed.value) == (
        "stop uses PostgreSQL's pg_ctl, which refuses to run as root: run it as the user"
        " who ran quickstart"
    )


def test_the_real_stop_as_root_says_which_user(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("only root can show the refusal for real; the unit test above covers it")
    result = subprocess.run(
        [SERVER_SCRIPT, "stop", "--data-dir", str(tmp_path / "backend")],
        capture_output=True, text=True, timeout=60, env=server_env(SUDO_USER="alice"),
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "Error: stop uses PostgreSQL's pg_ctl, which refuses to run as root: run it as alice"
        f" (e.g. runuser -u alice -- agent-telemetry-server stop --data-dir"
        f" {tmp_path / 'backend'})"
    ]
