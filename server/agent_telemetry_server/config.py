"""Server settings: a frozen dataclass built once from defaults, then TOML, then environment.

Command-line flags are applied last by the CLI with `Settings.with_overrides`, and checked
by the same `validate` as the rest.
"""

from __future__ import annotations

import dataclasses
import math
import os
import stat
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

CONFIG_ENV = "AGENT_TELEMETRY_SERVER_CONFIG"

_RATE_UNITS = {"s": 1.0, "sec": 1.0, "min": 60.0, "m": 60.0, "h": 3600.0, "hour": 3600.0}
# Retention deletes whole slices of old rows: every few seconds would keep the database busy
# for nothing, and less often than daily would let data outlive its window by days.
MIN_RETENTION_INTERVAL = 60.0
MAX_RETENTION_INTERVAL = 86_400.0
_DATABASE_SCHEMES = ("postgresql", "postgres")  # what asyncpg accepts


class ConfigError(ValueError):
    """A setting is missing or malformed; the message is one line meant for the operator."""


@dataclass(frozen=True)
class Rate:
    """At most `count` requests per `per_seconds`, with bursts up to `count`."""

    count: int
    per_seconds: float

    @property
    def per_second(self) -> float:
        return self.count / self.per_seconds


def parse_rate(text: str) -> Rate | None:
    """`"100/s"`, `"60/min"`, `"1000/h"` → Rate; `"off"` → None (no limit)."""
    value = text.strip().lower()
    if value in {"off", "none", "0"}:
        return None
    count_text, sep, unit = value.partition("/")
    if not sep or unit not in _RATE_UNITS:
        raise ConfigError(f"rate {text!r}: expected N/s, N/min, N/h or off")
    try:
        count = int(count_text)
    except ValueError:
        raise ConfigError(f"rate {text!r}: {count_text!r} is not a whole number") from None
    if count <= 0:
        raise ConfigError(f"rate {text!r}: must be positive, or off")
    return Rate(count, _RATE_UNITS[unit])


@dataclass(frozen=True)
class Settings:
    database_url: str | None = None
    host: str = "127.0.0.1"
    port: int = 8080
    # Several keys so a team can rotate: add the new one, move clients, drop the old one.
    api_keys: tuple[str, ...] = ()
    read_keys: tuple[str, ...] = ()
    # "auto" picks TimescaleDB when the extension can be created; fixed at the first migration.
    storage: str = "auto"
    retention_days: int = 90
    retention_interval_seconds: float = 3600.0
    idempotency_ttl_hours: int = 48
    # Limits on the decoded (gunzipped) body and on one event's encoded size.
    max_body_bytes: int = 5 * 1024 * 1024
    max_event_bytes: int = 256 * 1024
    max_events_per_batch: int = 1000
    key_rate: Rate | None = field(default_factory=lambda: Rate(50, 1.0))
    anonymous_id_rate: Rate | None = field(default_factory=lambda: Rate(60, 60.0))
    pool_min_size: int = 1
    pool_max_size: int = 10
    # A slow database must turn into a quick 503, never a hung client.
    pool_acquire_timeout: float = 2.0
    statement_timeout_ms: int = 10_000
    lock_timeout_ms: int = 5_000
    retry_after_seconds: int = 5
    shutdown_timeout: float = 10.0
    metrics_enabled: bool = True

    def with_overrides(self, **changes: Any) -> Settings:
        """Settings with the non-None `changes` applied (command-line flags), checked as a
        config file's values are: a flag is no excuse for a port that cannot exist."""
        changed = dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})
        validate(changed)
        return changed

    def require_database_url(self) -> str:
        if not self.database_url:
            raise ConfigError("no database: pass --database-url or set DATABASE_URL")
        check_database_url(self.database_url)
        return self.database_url


_INT_FIELDS = {
    "port",
    "retention_days",
    "idempotency_ttl_hours",
    "max_body_bytes",
    "max_event_bytes",
    "max_events_per_batch",
    "pool_min_size",
    "pool_max_size",
    "statement_timeout_ms",
    "lock_timeout_ms",
    "retry_after_seconds",
}
_FLOAT_FIELDS = {"retention_interval_seconds", "pool_acquire_timeout", "shutdown_timeout"}
_STR_FIELDS = {"database_url", "host", "storage"}
_KEY_FIELDS = {"api_keys", "read_keys"}
_RATE_FIELDS = {"key_rate", "anonymous_id_rate"}
_BOOL_FIELDS = {"metrics_enabled"}


def _split_keys(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


def _coerce(name: str, value: Any) -> Any:
    """Turn one TOML value into the dataclass field's type, or raise ConfigError naming it."""
    try:
        if name in _INT_FIELDS and isinstance(value, int) and not isinstance(value, bool):
            return value
        if name in _FLOAT_FIELDS and isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if name in _STR_FIELDS and isinstance(value, str):
            return value
        if name in _BOOL_FIELDS and isinstance(value, bool):
            return value
        if name in _RATE_FIELDS and isinstance(value, str):
            return parse_rate(value)
        if name in _KEY_FIELDS:
            if isinstance(value, str):
                return _split_keys(value)
            if isinstance(value, list) and all(isinstance(v, str) and v for v in value):
                return tuple(value)
    except ConfigError as exc:
        raise ConfigError(f"{name}: {exc}") from None
    raise ConfigError(f"config key {name!r} has the wrong type ({type(value).__name__})")


def _check_private(path: Path, data: dict[str, Any]) -> None:
    """Refuse a config that holds secrets and can be read by other users."""
    holds_secret = any(data.get(k) for k in _KEY_FIELDS) or "@" in str(data.get("database_url"))
    mode = path.stat().st_mode
    if holds_secret and mode & (stat.S_IRGRP | stat.S_IROTH):
        raise ConfigError(f"{path} holds keys but others can read it: run `chmod 600 {path}`")


def load_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    # A [server] table is accepted so one file can hold the server's section among others.
    if isinstance(data.get("server"), dict):
        data = data["server"]
    known = {f.name for f in dataclasses.fields(Settings)}
    for key in data:
        if key not in known:
            raise ConfigError(f"{path}: unknown key {key!r}")
    _check_private(path, data)
    return {key: _coerce(key, value) for key, value in data.items()}


def load_settings(
    config_path: Path | None = None, environ: dict[str, str] | os._Environ[str] | None = None
) -> Settings:
    """Defaults, then the TOML file (flag or AGENT_TELEMETRY_SERVER_CONFIG), then environment."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    if config_path is None and env.get(CONFIG_ENV):
        config_path = Path(env[CONFIG_ENV])
    if config_path is not None:
        values.update(load_toml(config_path))
    if env.get("DATABASE_URL"):
        values["database_url"] = env["DATABASE_URL"]
    if env.get("TELEMETRY_API_KEYS"):
        values["api_keys"] = _split_keys(env["TELEMETRY_API_KEYS"])
    if env.get("TELEMETRY_READ_KEYS"):
        values["read_keys"] = _split_keys(env["TELEMETRY_READ_KEYS"])
    settings = Settings(**values)
    validate(settings)
    return settings


def check_database_url(url: str) -> None:
    """Refuse a URL asyncpg could never connect with, so a typo is a configuration mistake
    (exit 1) rather than a database that could not be reached (exit 3).

    Only the form is checked; whether the database is there is for the connection to say.
    The message does not repeat the URL, which may hold a password.
    """
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise ConfigError(f"database URL is malformed ({exc})") from None
    if parts.scheme not in _DATABASE_SCHEMES:
        raise ConfigError(
            "database URL must start with postgresql:// (e.g. postgresql://user@host/db)"
        )
    # Several hosts are allowed (host1:5432,host2:5433); each port must be a port.
    for host in parts.netloc.rpartition("@")[2].split(","):
        # "host:5432" or "[::1]:5432": an IPv6 address keeps its colons inside brackets.
        port = host.rpartition("]")[2].partition(":")[2]
        if port and not (port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
            raise ConfigError(f"database URL has a port that is not 1 to 65535: {port[:20]!r}")


def validate(settings: Settings) -> None:
    if not 1 <= settings.port <= 65535:
        raise ConfigError(f"port {settings.port}: must be from 1 to 65535")
    interval = settings.retention_interval_seconds
    if not (
        math.isfinite(interval) and MIN_RETENTION_INTERVAL <= interval <= MAX_RETENTION_INTERVAL
    ):
        raise ConfigError(
            f"retention_interval_seconds {interval:g}: must be from"
            f" {MIN_RETENTION_INTERVAL:g} to {MAX_RETENTION_INTERVAL:g} (a day)"
        )
    if settings.storage not in {"auto", "timescaledb", "plain"}:
        raise ConfigError(f"storage {settings.storage!r}: expected auto, timescaledb or plain")
    if settings.retention_days < 1:
        raise ConfigError("retention_days must be at least 1")
    if settings.pool_min_size < 0 or settings.pool_max_size < max(1, settings.pool_min_size):
        raise ConfigError("pool_max_size must be at least 1 and not below pool_min_size")
    for name in ("max_body_bytes", "max_event_bytes", "max_events_per_batch"):
        if getattr(settings, name) < 1:
            raise ConfigError(f"{name} must be positive")
    if set(settings.api_keys) & set(settings.read_keys):
        raise ConfigError("a key may not be both an ingest key and a read key")
