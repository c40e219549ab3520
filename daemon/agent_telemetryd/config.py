"""Settings built once: defaults, then the TOML file, then the environment (DESIGN §4).

Every value remembers where it came from, so `status` can say why the daemon behaves
as it does.
"""

from __future__ import annotations

import ipaddress
import os
import re
import stat
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent_telemetryd.paths import Paths, resolve_paths
from agent_telemetryd.senders.endpoint import EndpointError, check_endpoint

SENDERS = ("posthog", "http", "file", "none")
MODES = ("off", "local", "upload")
DEFAULT_POSTHOG_HOST = "https://us.i.posthog.com"


class ConfigError(ValueError):
    """A setting is wrong; the message names the key and where it was set."""


class SecretsExposedError(ConfigError):
    """The config file holds an API key and others can read it."""


@dataclass(frozen=True)
class RateRule:
    count: int
    per_seconds: float


@dataclass(frozen=True)
class Config:
    paths: Paths
    sender: str = "none"
    mode: str | None = None  # None: the stored consent decides
    posthog_api_key: str | None = None
    posthog_host: str = DEFAULT_POSTHOG_HOST
    posthog_personal_api_key: str | None = None
    posthog_project_id: str | None = None
    http_endpoint: str | None = None
    http_api_key: str | None = None
    file_path: Path | None = None
    upload_interval: float = 3600.0
    batch_size: int = 100
    # First retry delay of the uploader's backoff (tests shorten it; doubles per retry).
    upload_retry_base: float = 1.0
    rate_limit: tuple[RateRule, ...] = (RateRule(60, 60.0), RateRule(1000, 3600.0))
    http_host: str = "127.0.0.1"
    http_port: int | None = 7468
    # Posting over loopback TCP needs the per-install token (where the kernel cannot say
    # which user a TCP peer is, this is what keeps other users out).
    http_require_token: bool = False
    max_event_bytes: int = 32 * 1024
    max_line_bytes: int = 64 * 1024
    max_depth: int = 10
    max_keys: int = 256
    max_string_chars: int = 4096
    # Connections, per listener (loopback TCP, api.sock, ingest.sock each get their own).
    max_connections: int = 256
    idle_timeout: float = 30.0  # HTTP: keep-alive, or a connection that never sends
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    ingest_idle_timeout: float = 600.0  # ingest.sock: the shims reconnect when closed
    max_events: int = 5_000_000
    max_bytes: int = 2 * 1024**3
    retention_days: int = 90
    allow_events: frozenset[str] | None = None
    allow_properties: frozenset[str] | None = None
    do_not_track: bool = False
    disabled: bool = False
    ci: bool = False
    log_level: str = "info"
    sources: Mapping[str, str] = field(default_factory=dict)

    def source_of(self, name: str) -> str:
        return self.sources.get(name, "default")


# --- parsers: each takes the raw value and returns the typed one or raises ValueError ---

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|min|h|d)?\s*$")
_UNIT_SECONDS = {
    None: 1.0,
    "ms": 0.001,
    "s": 1.0,
    "m": 60.0,
    "min": 60.0,
    "h": 3600.0,
    "d": 86400.0,
}
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d*)\s*(s|sec|m|min|h|hour|d|day)\s*$")
_RATE_UNITS = {
    "s": 1,
    "sec": 1,
    "m": 60,
    "min": 60,
    "h": 3600,
    "hour": 3600,
    "d": 86400,
    "day": 86400,
}


def parse_duration(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("expected seconds or a duration like 30s, 15m, 1h")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ValueError(f"{value!r} is not a duration (use seconds, or 30s, 15m, 1h)")
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if seconds <= 0:
        raise ValueError("must be greater than zero")
    return seconds


def parse_rate_limit(value: Any) -> tuple[RateRule, ...]:
    text = str(value).strip().lower()
    if text in ("off", "none", "0", "false"):
        return ()
    rules = []
    for part in text.split(","):
        match = _RATE.match(part)
        if not match:
            raise ValueError(f"{part.strip()!r} is not a rate (use e.g. 60/min,1000/h or off)")
        count, multiple, unit = int(match.group(1)), match.group(2), match.group(3)
        per = (int(multiple) if multiple else 1) * _RATE_UNITS[unit]
        if count <= 0 or per <= 0:
            raise ValueError(f"{part.strip()!r} must allow at least one event")
        rules.append(RateRule(count, float(per)))
    return tuple(rules)


def parse_positive_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("expected a whole number")
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{value!r} is not a whole number") from None
    if number <= 0:
        raise ValueError("must be greater than zero")
    return number


def parse_port(value: Any) -> int | None:
    if isinstance(value, str) and value.strip().lower() in ("off", "none", "disabled"):
        return None
    if isinstance(value, bool):
        raise ValueError("expected a port number or off")
    try:
        port = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{value!r} is not a port number (0-65535, or off)") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"{port} is not a port number (0-65535, or off)")
    return port


def is_loopback_ip(text: str) -> bool:
    """127.0.0.0/8 or ::1: what http_host may be, and the Host check takes (http_guard).

    An IPv4-mapped form (::ffff:127.0.0.1) is refused: whether it counts as loopback
    differs between Python versions, and no client needs it.
    """
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return False
    return address.is_loopback


def parse_loopback_host(value: Any) -> str:
    host = str(value).strip()
    if host == "localhost":
        return "127.0.0.1"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"{host!r} is not an IP address; only loopback is allowed") from None
    if not is_loopback_ip(host):
        raise ValueError(
            f"{host} is not a loopback address (127.0.0.0/8 or ::1);"
            " the daemon listens on loopback only"
        )
    return str(address)  # one spelling: 0:0:0:0:0:0:0:1 is ::1, as the Host check sees it


def parse_choice(choices: tuple[str, ...]) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        text = str(value).strip().lower()
        if text not in choices:
            raise ValueError(f"{value!r} is not one of {', '.join(choices)}")
        return text

    return parse


def parse_text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("expected a non-empty string")
    return value.strip()


def parse_names(value: Any) -> frozenset[str]:
    if isinstance(value, str):
        value = [part for part in value.split(",") if part.strip()]
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValueError("expected a list of names")
    return frozenset(item.strip() for item in value)


def parse_flag(value: Any) -> bool:
    """Environment-style truth: set and not 0/false/no/off."""
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() not in ("", "0", "false", "no", "off")


# (field, TOML key path, environment variable, parser)
_SETTINGS: tuple[tuple[str, str | None, str | None, Callable[[Any], Any]], ...] = (
    ("sender", "sender", "AGENT_TELEMETRY_SENDER", parse_choice(SENDERS)),
    ("mode", "mode", "AGENT_TELEMETRY_MODE", parse_choice(MODES)),
    ("posthog_api_key", "posthog.api_key", "POSTHOG_API_KEY", parse_text),
    ("posthog_host", "posthog.host", "POSTHOG_HOST", parse_text),
    (
        "posthog_personal_api_key",
        "posthog.personal_api_key",
        "POSTHOG_PERSONAL_API_KEY",
        parse_text,
    ),
    ("posthog_project_id", "posthog.project_id", "POSTHOG_PROJECT_ID", parse_text),
    ("http_endpoint", "http.endpoint", "TELEMETRY_ENDPOINT", parse_text),
    ("http_api_key", "http.api_key", "TELEMETRY_API_KEY", parse_text),
    ("file_path", "file.path", "AGENT_TELEMETRY_FILE", lambda v: Path(parse_text(v)).expanduser()),
    ("upload_interval", "upload_interval", "AGENT_TELEMETRY_UPLOAD_INTERVAL", parse_duration),
    ("batch_size", "batch_size", "AGENT_TELEMETRY_BATCH_SIZE", parse_positive_int),
    ("upload_retry_base", "upload_retry_base", "AGENT_TELEMETRY_RETRY_BASE", parse_duration),
    ("rate_limit", "rate_limit", "AGENT_TELEMETRY_RATE_LIMIT", parse_rate_limit),
    ("http_host", "http_host", None, parse_loopback_host),
    ("http_port", "http_port", "AGENT_TELEMETRY_HTTP_PORT", parse_port),
    (
        "http_require_token",
        "http_require_token",
        "AGENT_TELEMETRY_HTTP_REQUIRE_TOKEN",
        parse_flag,
    ),
    ("max_event_bytes", "limits.max_event_bytes", None, parse_positive_int),
    ("max_line_bytes", "limits.max_line_bytes", None, parse_positive_int),
    ("max_depth", "limits.max_depth", None, parse_positive_int),
    ("max_keys", "limits.max_keys", None, parse_positive_int),
    ("max_string_chars", "limits.max_string_chars", None, parse_positive_int),
    ("max_connections", "limits.max_connections", None, parse_positive_int),
    ("idle_timeout", "limits.idle_timeout", None, parse_duration),
    ("header_timeout", "limits.header_timeout", None, parse_duration),
    ("body_timeout", "limits.body_timeout", None, parse_duration),
    ("ingest_idle_timeout", "limits.ingest_idle_timeout", None, parse_duration),
    ("max_events", "store.max_events", "AGENT_TELEMETRY_MAX_EVENTS", parse_positive_int),
    ("max_bytes", "store.max_bytes", "AGENT_TELEMETRY_MAX_BYTES", parse_positive_int),
    (
        "retention_days",
        "store.retention_days",
        "AGENT_TELEMETRY_RETENTION_DAYS",
        parse_positive_int,
    ),
    ("allow_events", "privacy.allow_events", None, parse_names),
    ("allow_properties", "privacy.allow_properties", None, parse_names),
    ("do_not_track", None, "DO_NOT_TRACK", parse_flag),
    ("disabled", None, "AGENT_TELEMETRY_DISABLED", parse_flag),
    ("ci", None, "CI", parse_flag),
    (
        "log_level",
        "log_level",
        "AGENT_TELEMETRY_LOG_LEVEL",
        parse_choice(("debug", "info", "warning", "error")),
    ),
)
_SECRET_KEYS = ("posthog.api_key", "posthog.personal_api_key", "http.api_key")
_KNOWN_TABLES = {"posthog", "http", "file", "limits", "store", "privacy"}


def load_config(
    environ: Mapping[str, str] = os.environ,
    paths: Paths | None = None,
    *,
    check_secrets_private: bool = True,
) -> Config:
    """Defaults, then the config file, then the environment; raises ConfigError
    (SecretsExposedError for a config holding a key that others can read)."""
    paths = paths or resolve_paths(environ)
    document = _read_toml(paths.config_file)
    _reject_unknown_keys(document, paths.config_file)
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for name, toml_key, env_key, parse in _SETTINGS:
        if toml_key is not None:
            raw = _lookup(document, toml_key)
            if raw is not None:
                try:
                    values[name] = parse(raw)
                except ValueError as error:
                    raise ConfigError(f"{paths.config_file}: {toml_key}: {error}") from None
                sources[name] = "config"
        if env_key is not None:
            raw_env = environ.get(env_key)
            if raw_env is not None and (raw_env.strip() or name in ("do_not_track", "ci")):
                try:
                    values[name] = parse(raw_env)
                except ValueError as error:
                    raise ConfigError(f"environment {env_key}: {error}") from None
                sources[name] = "env"
    if "sender" not in values:
        if values.get("posthog_api_key"):
            values["sender"], sources["sender"] = "posthog", sources["posthog_api_key"]
        elif values.get("http_endpoint"):
            values["sender"], sources["sender"] = "http", sources["http_endpoint"]
    if check_secrets_private:
        _check_secrets_private(document, paths.config_file)
    config = Config(paths=paths, sources=sources, **values)
    _check_sender_settings(config)
    return config


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        return {}
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML: {error}") from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot read: {error.strerror}") from None


def _lookup(document: Mapping[str, Any], dotted: str) -> Any:
    node: Any = document
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def _reject_unknown_keys(document: Mapping[str, Any], path: Path) -> None:
    known = {key for _, key, _, _ in _SETTINGS if key}
    for key, value in document.items():
        if key in _KNOWN_TABLES and isinstance(value, Mapping):
            for sub in value:
                if f"{key}.{sub}" not in known:
                    raise ConfigError(f"{path}: unknown setting {key}.{sub}")
        elif key not in known:
            raise ConfigError(f"{path}: unknown setting {key}")


def _check_secrets_private(document: Mapping[str, Any], path: Path) -> None:
    if not any(_lookup(document, key) for key in _SECRET_KEYS):
        return
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise SecretsExposedError(
            f"{path} holds an API key but is readable by others (mode {mode:o}); "
            f"run: chmod 600 {path}"
        )


def _check_sender_settings(config: Config) -> None:
    if config.sender == "posthog" and not config.posthog_api_key:
        raise ConfigError("sender posthog needs POSTHOG_API_KEY (or posthog.api_key in the config)")
    if config.sender == "http" and not config.http_endpoint:
        raise ConfigError("sender http needs TELEMETRY_ENDPOINT (or http.endpoint in the config)")
    # Events leave only over https (plain http to loopback alone): refused here, at load,
    # so the daemon does not start and every command says why.
    try:
        if config.sender == "posthog":
            check_endpoint(config.posthog_host, "posthog.host / POSTHOG_HOST")
        if config.sender == "http" and config.http_endpoint:
            check_endpoint(config.http_endpoint, "http.endpoint / TELEMETRY_ENDPOINT")
    except EndpointError as error:
        raise ConfigError(str(error)) from None
