"""A throwaway PostgreSQL started from the machine's binaries, for tests and benchmarks.

Needs `initdb` and `pg_ctl` (on PATH, or Debian's /usr/lib/postgresql/N/bin). PostgreSQL
refuses to run as root, so as root it runs as a system user (`pgtest`, created if missing).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

from agent_telemetry_server.pgcluster import ClusterError, find_bindir

PG_USER = "pgtest"
SUPERUSER = "postgres"


# The error of a cluster that could not be made or started.
PostgresUnavailable = ClusterError


def reachable_by(path: Path, uid: int) -> bool:
    """Every folder on the way to `path` can be entered by `uid` (others' x bit, or owner)."""
    for folder in (path, *path.parents):
        info = folder.stat()
        if not (info.st_mode & 0o001 or info.st_uid == uid):
            return False
    return True


def temp_base_for(uid: int) -> Path:
    """A temporary folder's parent that `uid` can reach: the usual one, or /var/tmp or
    /dev/shm when something has made the usual one private (a /tmp tightened to 0700
    would lock an unprivileged PostgreSQL out of its own data folder)."""
    bases = (Path(tempfile.gettempdir()), Path("/var/tmp"), Path("/dev/shm"))
    for base in bases:
        if base.is_dir() and reachable_by(base, uid):
            return base
    raise PostgresUnavailable(
        f"no temporary folder that uid {uid} can enter among {', '.join(map(str, bases))}"
    )


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def ensure_system_user(name: str) -> None:
    """Create the system user `name` (no home, no login shell) unless it exists."""
    try:
        pwd.getpwnam(name)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
            check=True,
            capture_output=True,
        )


@dataclass
class TemporaryPostgres:
    """`with TemporaryPostgres() as pg: pg.dsn("postgres")` — stopped and removed on exit."""

    port: int = 0
    base: Path = field(init=False)
    _prefix: list[str] = field(init=False, default_factory=list)
    _bindir: Path = field(init=False)

    @property
    def data(self) -> Path:
        return self.base / "data"

    @property
    def log_file(self) -> Path:
        return self.base / "postgres.log"

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str) -> None:
        result = subprocess.run(
            [*self._prefix, *args], cwd=self.base, capture_output=True, text=True, timeout=120
        )
        if result.returncode != 0:
            detail = (result.stderr or result.stdout).strip().splitlines()[-3:]
            raise PostgresUnavailable(f"{Path(args[0]).name} failed: {' | '.join(detail)}")

    def start(self) -> TemporaryPostgres:
        self._bindir = find_bindir()
        if os.geteuid() == 0:
            ensure_system_user(PG_USER)
            entry = pwd.getpwnam(PG_USER)
            base = temp_base_for(entry.pw_uid)
            self.base = Path(tempfile.mkdtemp(prefix="agent-telemetry-pg-", dir=base))
            os.chown(self.base, entry.pw_uid, entry.pw_gid)
            self._prefix = ["runuser", "-u", PG_USER, "--"]
        else:
            self.base = Path(tempfile.mkdtemp(prefix="agent-telemetry-pg-"))
        self.port = self.port or free_port()
        self._run(
            str(self._bindir / "initdb"),
            "-D", str(self.data), "-U", SUPERUSER, "--auth=trust",
            "-E", "UTF8", "--locale=C", "--no-sync",
        )  # fmt: skip
        # Durability settings off: this cluster lives for one test run.
        options = (
            f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1"
            " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        self._run(
            str(self._bindir / "pg_ctl"),
            "-D", str(self.data), "-l", str(self.log_file), "-o", options, "-w", "-t", "60",
            "start",
        )  # fmt: skip
        return self

    def stop(self) -> None:
        with contextlib.suppress(PostgresUnavailable, subprocess.TimeoutExpired):
            self._run(
                str(self._bindir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"
            )
        shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> TemporaryPostgres:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


async def create_database(admin_dsn: str, name: str, template: str | None = None) -> None:
    conn = await asyncpg.connect(admin_dsn)
    try:
        clause = f" TEMPLATE {template}" if template else ""
        await conn.execute(f'CREATE DATABASE "{name}"{clause}')
    finally:
        await conn.close()
