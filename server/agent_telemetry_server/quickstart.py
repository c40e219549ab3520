"""`agent-telemetry-server quickstart`: a private PostgreSQL cluster in one folder, an
ordinary owner role and database in it, fresh keys, and the settings a daemon needs —
so a team tries the backend with one command.

The folder (`--data-dir`), made 0700:

    pgdata/       the cluster (initdb), owned by whoever ran quickstart
    run/          its Unix socket: the cluster listens on no TCP port at all, and only
                  this user can enter the folder
    postgres.log  the cluster's log
    server.toml   database URL, keys, host and port, 0600: `serve --config` reads it too
    daemon.env    a daemon's settings, 0600 (`set -a; . daemon.env; set +a`, or a
                  service's EnvironmentFile)
    server.pid    while quickstart serves; `stop` signals it

Running it again reuses all of it: same cluster, data and keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pwd
import secrets
import shlex
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import asyncpg

from agent_telemetry_server.config import ConfigError, Settings, load_settings
from agent_telemetry_server.pgcluster import Cluster, find_bindir

SUPERUSER = "postgres"
OWNER = "telemetry"  # owns the database; neither superuser nor member of any predefined role
DATABASE = "telemetry"
PG_PORT = 5432  # names the socket file only: nothing listens on TCP
_SOCKET_PATH_LIMIT = 107  # sun_path is 108 bytes with the final NUL


class QuickstartError(RuntimeError):
    """Something the user must change; the message is one line that says what."""


@dataclass(frozen=True)
class Layout:
    root: Path

    @property
    def pgdata(self) -> Path:
        return self.root / "pgdata"

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def pg_log(self) -> Path:
        return self.root / "postgres.log"

    @property
    def config(self) -> Path:
        return self.root / "server.toml"

    @property
    def daemon_env(self) -> Path:
        return self.root / "daemon.env"

    @property
    def pid_file(self) -> Path:
        return self.root / "server.pid"

    def cluster(self) -> Cluster:
        return Cluster(find_bindir(), self.pgdata, self.pg_log)

    def database_url(self) -> str:
        return f"postgresql://{OWNER}@/{DATABASE}?host={quote(str(self.run))}&port={PG_PORT}"


def _user_to_suggest(data_dir: Path, environ: Mapping[str, str]) -> str | None:
    """Who should run it: the sudo caller, else the owner of the folder (or of its closest
    existing parent) when that is not root."""
    sudo_user = environ.get("SUDO_USER")
    if sudo_user and sudo_user != "root":
        return sudo_user
    for candidate in (data_dir, *data_dir.parents):
        if candidate.exists():
            uid = candidate.stat().st_uid
            with contextlib.suppress(KeyError):
                return pwd.getpwuid(uid).pw_name if uid != 0 else None
            return None
    return None


def refuse_root(
    data_dir: Path, environ: Mapping[str, str] | None = None, command: str = "quickstart"
) -> None:
    """PostgreSQL will not run as root; say which user should run `command` instead.

    The hint repeats the command that was refused: suggesting `quickstart` to someone who
    asked to `stop` would start the very thing they meant to end.
    """
    if os.geteuid() != 0:
        return
    user = _user_to_suggest(data_dir, os.environ if environ is None else environ)
    uses = "runs PostgreSQL" if command == "quickstart" else "uses PostgreSQL's pg_ctl"
    refused = f"{command} {uses}, which refuses to run as root"
    retry = f"agent-telemetry-server {command} --data-dir {data_dir}"
    if user:
        raise QuickstartError(f"{refused}: run it as {user} (e.g. runuser -u {user} -- {retry})")
    if command != "quickstart":
        # Only whoever ran quickstart owns the cluster; a new user could not stop it.
        raise QuickstartError(f"{refused}: run it as the user who ran quickstart")
    raise QuickstartError(
        f"{refused}: run it as an ordinary user"
        f" (e.g. useradd --create-home telemetry; runuser -u telemetry -- {retry})"
    )


def _check_socket_path(layout: Layout) -> None:
    socket = layout.run / f".s.PGSQL.{PG_PORT}"
    if len(os.fsencode(socket)) > _SOCKET_PATH_LIMIT:
        raise QuickstartError(
            f"{layout.root} is too deep for a PostgreSQL socket path"
            f" ({len(os.fsencode(socket))} > {_SOCKET_PATH_LIMIT} bytes): choose a shorter"
            " --data-dir"
        )


def _conf_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def ensure_cluster(layout: Layout) -> tuple[Cluster, bool]:
    """The folder's cluster, made if missing, started if stopped. True when made now."""
    layout.root.mkdir(mode=0o700, parents=True, exist_ok=True)
    layout.root.chmod(0o700)
    layout.run.mkdir(mode=0o700, exist_ok=True)
    layout.run.chmod(0o700)
    _check_socket_path(layout)
    cluster = layout.cluster()
    created = False
    if not cluster.exists():
        if layout.pgdata.exists() and any(layout.pgdata.iterdir()):
            raise QuickstartError(
                f"{layout.pgdata} exists but is not a PostgreSQL cluster:"
                " move it away or choose another --data-dir"
            )
        # Trust on the socket only, which lives in a 0700 folder: the same user's
        # processes get in, nobody else can reach it; TCP is refused and not listened on.
        cluster.initdb(
            SUPERUSER, "--auth-local=trust", "--auth-host=reject", "-E", "UTF8", "--locale=C"
        )
        with (layout.pgdata / "postgresql.conf").open("a") as conf:
            conf.write(
                "\n# agent-telemetry-server quickstart: reachable only through a socket in a"
                " private folder.\n"
                "listen_addresses = ''\n"
                f"unix_socket_directories = {_conf_string(str(layout.run))}\n"
                f"port = {PG_PORT}\n"
            )
        created = True
    if not cluster.running():
        cluster.start()
    return cluster, created


async def ensure_database(layout: Layout) -> None:
    """The owner role and its database, made once."""
    conn = await asyncpg.connect(
        host=str(layout.run), port=PG_PORT, user=SUPERUSER, database="postgres", timeout=30
    )
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", OWNER):
            await conn.execute(f"CREATE ROLE {OWNER} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE")
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", DATABASE):
            await conn.execute(f"CREATE DATABASE {DATABASE} OWNER {OWNER}")
    finally:
        await conn.close()


def _write_private(path: Path, text: str) -> None:
    """Write `text` to `path` with mode 0600 from the first byte (temporary name, rename)."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        temporary.unlink()
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    temporary.replace(path)


def endpoint(settings: Settings) -> str:
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "") else settings.host
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{settings.port}"


def daemon_settings(settings: Settings) -> dict[str, str]:
    return {
        "AGENT_TELEMETRY_SENDER": "http",
        "TELEMETRY_ENDPOINT": endpoint(settings),
        "TELEMETRY_API_KEY": settings.api_keys[0],
    }


def write_files(layout: Layout, settings: Settings) -> None:
    toml = "\n".join(
        [
            "# Written by `agent-telemetry-server quickstart` for the cluster in this folder.",
            f"database_url = {json.dumps(settings.database_url)}",
            f"api_keys = {json.dumps(list(settings.api_keys))}",
            f"read_keys = {json.dumps(list(settings.read_keys))}",
            f"host = {json.dumps(settings.host)}",
            f"port = {settings.port}",
            "",
        ]
    )
    _write_private(layout.config, toml)
    env = "".join(f"{k}={v}\n" for k, v in daemon_settings(settings).items())
    _write_private(layout.daemon_env, env)


@dataclass(frozen=True)
class Prepared:
    layout: Layout
    settings: Settings
    cluster: Cluster
    cluster_created: bool
    keys_created: bool


def _saved_settings(layout: Layout) -> Settings | None:
    """The settings an earlier run kept in server.toml, or None on a first run."""
    if not layout.config.exists():
        return None
    try:
        # The file's keys, but an environment variable must not silently replace them.
        return load_settings(layout.config, environ={})
    except ConfigError as exc:
        # Say which file: the run that wrote it may be long ago.
        message = str(exc)
        if str(layout.config) not in message:
            message = f"{layout.config}: {message}"
        raise QuickstartError(message) from None


def prepare(data_dir: Path, host: str | None, port: int | None) -> Prepared:
    """Everything but serving: cluster, role, database, keys and files. Idempotent.

    Settings are checked before anything is made or written, so a mistyped flag leaves
    no cluster behind and no bad value in server.toml for the next run to trip over.
    """
    layout = Layout(data_dir.resolve())
    refuse_root(layout.root)
    Settings().with_overrides(host=host, port=port)  # a bad flag: ConfigError, here
    pid = running_server(layout)
    if pid:
        raise QuickstartError(
            f"a quickstart of {layout.root} is already serving (pid {pid}):"
            f" stop it first (agent-telemetry-server stop --data-dir {layout.root})"
        )
    saved = _saved_settings(layout)
    cluster, cluster_created = ensure_cluster(layout)
    try:
        asyncio.run(ensure_database(layout))
        keys_created = saved is None
        if saved is None:
            settings = Settings(
                database_url=layout.database_url(),
                api_keys=("at_ingest_" + secrets.token_urlsafe(24),),
                read_keys=("at_read_" + secrets.token_urlsafe(24),),
            )
        else:
            settings = saved
        changed = settings.with_overrides(host=host, port=port)
        if keys_created or changed != settings:
            write_files(layout, changed)
    except BaseException:
        cluster.stop()
        raise
    return Prepared(layout, changed, cluster, cluster_created, keys_created)


def announcement(prepared: Prepared) -> str:
    """What quickstart prints once the server listens: where things are and what to paste."""
    layout, settings = prepared.layout, prepared.settings
    url = endpoint(settings)
    state = "made" if prepared.cluster_created else "reused"
    lines = [
        "",
        f"agent-telemetry-server is serving at {url}",
        f"  PostgreSQL {prepared.cluster.version} cluster {state}: {layout.pgdata}"
        f" (socket only, in {layout.run})",
        f"  database {DATABASE}, owned by the ordinary role {OWNER}: {settings.database_url}",
        "",
    ]
    env = daemon_settings(settings)
    if prepared.keys_created:
        lines += [
            "New keys, shown this once (kept in server.toml and daemon.env, mode 0600):",
            f"  ingest key: {settings.api_keys[0]}",
            f"  read key:   {settings.read_keys[0]}",
            "",
            f"Team dashboard: {url}/team#key={settings.read_keys[0]}",
            "",
            "Point a daemon at it — in the daemon's environment, then restart the daemon:",
            *(f"  export {k}={v}" for k, v in env.items()),
            "or in its config file (chmod 600), at the top, then `agent-telemetry reload`:",
            '  sender = "http"',
            "  [http]",
            f'  endpoint = "{env["TELEMETRY_ENDPOINT"]}"',
            f'  api_key = "{env["TELEMETRY_API_KEY"]}"',
        ]
    else:
        lines += [
            f"Keys unchanged: see {layout.config} (0600).",
            f"Team dashboard: {url}/team (the read key is in server.toml)",
            "",
            "Point a daemon at it — in the daemon's environment, then restart the daemon:",
            f"  set -a; . {shlex.quote(str(layout.daemon_env))}; set +a",
        ]
    lines += [
        "",
        "Then: agent-telemetry enable && agent-telemetry flush",
        "",
        "Ctrl-C stops the server and the cluster (or: agent-telemetry-server stop"
        f" --data-dir {shlex.quote(str(layout.root))}); the same command again brings both"
        " back, data and keys kept.",
        "",
    ]
    return "\n".join(lines)


def _is_server(pid: int) -> bool:
    if not _alive(pid):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True  # not Linux: the pid file and a live process are all there is
    return b"agent-telemetry-server" in cmdline or b"agent_telemetry_server" in cmdline


def running_server(layout: Layout) -> int | None:
    """The pid of the quickstart serving this folder, if one is."""
    try:
        pid = int(layout.pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if pid > 0 and _is_server(pid) else None


def _alive(pid: int) -> bool:
    """The process exists and has not exited (an exited child its parent has not yet
    reaped is a zombie: it still answers signal 0, but it is gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.1)
    return False


def stop(data_dir: Path) -> list[str]:
    """Stop a quickstart of this folder: its server (SIGTERM), then its cluster."""
    layout = Layout(data_dir.resolve())
    refuse_root(layout.root, command="stop")
    done: list[str] = []
    pid = running_server(layout)
    if pid:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        if not _wait_gone(pid, 30):
            raise QuickstartError(f"the server (pid {pid}) did not stop within 30 s")
        done.append(f"stopped the server (pid {pid})")
    cluster = layout.cluster()
    if not cluster.exists():
        raise QuickstartError(f"no quickstart cluster in {layout.root}")
    if cluster.running():
        cluster.stop()
        done.append(f"stopped the PostgreSQL cluster in {layout.pgdata}")
    return done or ["nothing was running"]
