"""A PostgreSQL cluster of this machine's binaries in a folder of one's own: find the
binaries, `initdb`, `pg_ctl start|stop|status`. Used by `quickstart` and the tests."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path


class ClusterError(RuntimeError):
    """No PostgreSQL binaries here, or one of them failed; the message says which."""


def find_bindir() -> Path:
    """The folder of `initdb` and `pg_ctl`: on PATH, else Debian's newest
    /usr/lib/postgresql/N/bin."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).resolve().parent
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if versions:
        return versions[-1].parent
    raise ClusterError(
        "PostgreSQL binaries not found: install PostgreSQL's server package"
        " (Debian/Ubuntu: postgresql; it provides initdb and pg_ctl)"
    )


def run(args: list[str], cwd: Path | None = None, timeout: float = 120) -> str:
    """Run a PostgreSQL tool; its last lines of output become the error when it fails."""
    try:
        result = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise ClusterError(f"{Path(args[0]).name} took longer than {timeout:.0f} s") from None
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        raise ClusterError(f"{Path(args[0]).name} failed: {' | '.join(detail)}")
    return result.stdout


@dataclass(frozen=True)
class Cluster:
    bindir: Path
    data: Path
    log_file: Path

    @property
    def version(self) -> str:
        """The major version the data folder was made by (PG_VERSION)."""
        return (self.data / "PG_VERSION").read_text().strip()

    def exists(self) -> bool:
        return (self.data / "PG_VERSION").is_file()

    def initdb(self, superuser: str, *options: str) -> None:
        run([str(self.bindir / "initdb"), "-D", str(self.data), "-U", superuser, *options])

    def running(self) -> bool:
        """pg_ctl status: exit 0 when a server runs on this folder, 3 when none does."""
        result = subprocess.run(
            [str(self.bindir / "pg_ctl"), "-D", str(self.data), "status"],
            capture_output=True,
            timeout=30,
        )
        return result.returncode == 0

    def start(self, options: str = "") -> None:
        args = [str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log_file)]
        if options:
            args += ["-o", options]
        run([*args, "-w", "-t", "60", "start"])

    def stop(self) -> None:
        run([str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"])
