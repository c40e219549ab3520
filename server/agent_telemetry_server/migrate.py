"""Versioned SQL migrations from `migrations/NNNN_name[.storage].sql`, recorded in
`schema_migrations` with a checksum so an edited, already-applied file is caught.

A version may come in two variants, `.plain.sql` and `.timescaledb.sql`; the storage mode
is chosen once, when that version is first applied, and kept in `server_meta`.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources

import asyncpg
import structlog

log = structlog.get_logger("agent_telemetry_server.migrate")

STORAGE_MODES = ("plain", "timescaledb")
# Any constant: serialises migrations when several replicas start at once.
_LOCK_KEY = 0x6167_656E_7474
_FILE = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)(?:\.(?P<storage>[a-z]+))?\.sql$")


class MigrationError(RuntimeError):
    """The database and this server's migrations disagree; the message says how."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    storage: str | None  # None: the same file for every storage mode
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()

    @property
    def filename(self) -> str:
        suffix = f".{self.storage}" if self.storage else ""
        return f"{self.version:04d}_{self.name}{suffix}.sql"


@dataclass(frozen=True)
class MigrationState:
    current: int
    latest: int
    storage: str | None

    @property
    def up_to_date(self) -> bool:
        return self.current == self.latest

    @property
    def summary(self) -> str:
        """One phrase for /health: which way the database and this server disagree."""
        if self.current > self.latest:
            # A newer server migrated it (a rolling upgrade): nothing here to apply.
            return "database is newer than this server: upgrade the server"
        return "ok" if self.up_to_date else "migrations pending"


def discover() -> list[Migration]:
    folder = resources.files("agent_telemetry_server") / "migrations"
    found: list[Migration] = []
    for entry in folder.iterdir():
        match = _FILE.match(entry.name)
        if match is None:
            continue
        storage = match["storage"]
        if storage is not None and storage not in STORAGE_MODES:
            raise MigrationError(f"{entry.name}: unknown storage variant {storage!r}")
        found.append(Migration(int(match["version"]), match["name"], storage, entry.read_text()))
    return sorted(found, key=lambda m: (m.version, m.storage or ""))


def latest_version(migrations: list[Migration] | None = None) -> int:
    return max((m.version for m in migrations or discover()), default=0)


def _for_storage(migrations: list[Migration], storage: str) -> dict[int, Migration]:
    chosen: dict[int, Migration] = {}
    for migration in migrations:
        if migration.storage in (None, storage):
            chosen[migration.version] = migration
    return chosen


def choose_storage(installed: bool, available: bool, loader_running: bool) -> str:
    """'timescaledb' when the extension is installed here, or available and preloaded.

    Being listed in pg_available_extensions is not enough: CREATE EXTENSION needs the
    library in shared_preload_libraries too, and fails (FATAL, the connection is gone)
    without it.
    """
    return "timescaledb" if installed or (available and loader_running) else "plain"


async def detect_storage(conn: asyncpg.Connection) -> str:
    """`choose_storage` from what an ordinary role may read.

    Not `current_setting('shared_preload_libraries')`: that needs superuser or
    pg_read_all_settings, and a database owner has neither. When TimescaleDB is
    preloaded, its loader defines `timescaledb.max_background_workers` as an integer
    setting, which every role can see in pg_settings; a mere placeholder of that name
    (a line in postgresql.conf with the library not loaded) is a string and does not count.
    """
    row = await conn.fetchrow(
        """
        SELECT
          EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') AS installed,
          EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb') AS available,
          EXISTS (SELECT 1 FROM pg_settings
                  WHERE name = 'timescaledb.max_background_workers'
                    AND vartype = 'integer') AS loader_running
        """
    )
    assert row is not None
    return choose_storage(row["installed"], row["available"], row["loader_running"])


async def _stored_storage(conn: asyncpg.Connection) -> str | None:
    exists = await conn.fetchval("SELECT to_regclass('server_meta') IS NOT NULL")
    if not exists:
        return None
    value: str | None = await conn.fetchval("SELECT value FROM server_meta WHERE key = 'storage'")
    return value


async def state(conn: asyncpg.Connection) -> MigrationState:
    """Where the database stands; for /health. Does not change anything."""
    latest = latest_version()
    if not await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL"):
        return MigrationState(0, latest, None)
    current = await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_migrations")
    return MigrationState(int(current), latest, await _stored_storage(conn))


async def _choose_storage(conn: asyncpg.Connection, wanted: str) -> str:
    stored = await _stored_storage(conn)
    if stored is not None:
        if wanted != "auto" and wanted != stored:
            raise MigrationError(
                f"storage is {stored!r} in this database; it cannot change to {wanted!r}"
            )
        return stored
    if wanted == "plain":
        # Nothing to detect: plain PostgreSQL needs nothing a database owner lacks.
        return "plain"
    usable = await detect_storage(conn)
    if wanted == "timescaledb" and usable != "timescaledb":
        raise MigrationError(
            "storage = timescaledb, but the extension is not installed and preloaded"
        )
    return usable


async def migrate(conn: asyncpg.Connection, storage: str = "auto") -> list[str]:
    """Apply every pending migration, each in its own transaction. Returns the files applied."""
    migrations = discover()
    await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
    try:
        await conn.execute(
            """
            CREATE TABLE IF NOT EXISTS schema_migrations (
                version    integer     PRIMARY KEY,
                name       text        NOT NULL,
                checksum   text        NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now()
            )
            """
        )
        applied = {
            r["version"]: (r["name"], r["checksum"])
            for r in await conn.fetch("SELECT version, name, checksum FROM schema_migrations")
        }
        latest = latest_version(migrations)
        if applied and max(applied) > latest:
            raise MigrationError(
                f"database schema is at version {max(applied)}, newer than this server's "
                f"{latest}: upgrade the server"
            )
        mode = await _choose_storage(conn, storage)
        chosen = _for_storage(migrations, mode)
        done: list[str] = []
        for version in sorted(chosen):
            migration = chosen[version]
            if version in applied:
                if applied[version][1] != migration.checksum:
                    raise MigrationError(
                        f"{applied[version][0]} was changed after it was applied; "
                        "add a new migration instead"
                    )
                continue
            async with conn.transaction():
                await conn.execute(migration.sql)
                if migration.storage is not None:
                    await conn.execute(
                        "INSERT INTO server_meta (key, value) VALUES ('storage', $1)"
                        " ON CONFLICT (key) DO NOTHING",
                        mode,
                    )
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                    version,
                    migration.filename,
                    migration.checksum,
                )
            log.info("migration applied", migration=migration.filename, storage=mode)
            done.append(migration.filename)
        return done
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
