"""Settings built once: defaults, then the TOML file, then the environment.

Every value remembers where it came from, so `status` can say why the daemon behaves
as it does.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from agent_telemetry._paths import NotRegularFileError, open_regular
from agent_telemetryd.analytics.price_overrides import PriceOverride, parse_price_overrides
from agent_telemetryd.config_problems import ConfigProblem, unknown_keys
from agent_telemetryd.config_safety import unsafe_file_problems, what_an_unsafe_file_may_say
from agent_telemetryd.config_values import (
    ConfigError,
    EndpointError,
    RateRule,
    check_endpoint,
    parse_buffer_bytes,
    parse_choice,
    parse_ci,
    parse_duration,
    parse_flag,
    parse_idle_exit,
    parse_loopback_host,
    parse_names,
    parse_port,
    parse_positive_int,
    parse_rate_limit,
    parse_text,
)
from agent_telemetryd.paths import Paths, resolve_paths
from agent_telemetryd.service.envfile import key_places

SENDERS = ("posthog", "http", "file", "none")


class Mode(StrEnum):
    """The consent modes, the one place their names are spelled."""

    OFF = "off"  # nothing kept, nothing sent
    LOCAL = "local"  # kept for the user's own analytics, never sent (the default)
    UPLOAD = "upload"  # kept, and sent on schedule


MODES = tuple(mode.value for mode in Mode)
DEFAULT_POSTHOG_HOST = "https://us.i.posthog.com"
# How the endpoint settings are named in messages: the config key, then the variable.
POSTHOG_HOST_SETTING = "posthog.host / POSTHOG_HOST"
HTTP_ENDPOINT_SETTING = "http.endpoint / TELEMETRY_ENDPOINT"


@dataclass(frozen=True)
class Config:
    paths: Paths
    sender: str = "none"
    mode: str | None = None  # None: the stored consent decides
    # Keys stay out of repr(): a Config in a log line or a traceback must not leak them.
    posthog_api_key: str | None = field(default=None, repr=False)
    posthog_host: str = DEFAULT_POSTHOG_HOST
    posthog_personal_api_key: str | None = field(default=None, repr=False)
    posthog_project_id: str | None = None
    http_endpoint: str | None = None
    http_api_key: str | None = field(default=None, repr=False)
    file_path: Path | None = None
    upload_interval: float = 3600.0
    batch_size: int = 100
    # First retry delay of the uploader's backoff (tests shorten it; doubles per retry).
    upload_retry_base: float = 1.0
    rate_limit: tuple[RateRule, ...] = (RateRule(60, 60.0), RateRule(1000, 3600.0))
    # Events a source may have waiting for the rate limit; the excess is kept local.
    rate_limit_backlog: int = 10_000
    http_host: str = "127.0.0.1"
    http_port: int | None = 7468
    otlp_http_port: int | None = None  # a second, OTLP-only listener (4318 is OTLP's own)
    otlp_grpc_port: int | None = None  # OTLP/gRPC, with the [otlp-grpc] extra (4317)
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
    # A quiet daemon exits after this (0: never); None: 15 minutes when socket-activated,
    # never when started by hand (idle.py).
    idle_exit: float | None = None
    max_events: int = 5_000_000
    max_bytes: int = 2 * 1024**3
    retention_days: int = 90
    allow_events: frozenset[str] | None = None
    allow_properties: frozenset[str] | None = None
    capture_content: bool = False  # keep prompts, completions, tool arguments, log bodies
    prices: tuple[PriceOverride, ...] = ()  # [prices."<model>"]: over the shipped table
    do_not_track: bool = False
    disabled: bool = False
    ci: bool = False
    log_level: str = "info"
    # Keys of the file this version does not know (config_problems.NOT_THIS_VERSIONS):
    # uploads wait while there are any.
    unknown_settings: tuple[str, ...] = ()
    sources: Mapping[str, str] = field(default_factory=dict)

    def source_of(self, name: str) -> str:
        return self.sources.get(name, "default")

    @property
    def uploads_held(self) -> str | None:
        """Why nothing may be uploaded under this config whatever the mode, or None."""
        if not self.unknown_settings:
            return None
        return (
            f"the config has settings this version does not know "
            f"({', '.join(self.unknown_settings)}), which may limit what is sent: nothing is "
            "uploaded until they are removed or agent-telemetry is upgraded"
        )


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
    (
        "rate_limit_backlog",
        "rate_limit_backlog",
        "AGENT_TELEMETRY_RATE_LIMIT_BACKLOG",
        parse_positive_int,
    ),
    ("http_host", "http_host", None, parse_loopback_host),
    ("http_port", "http_port", "AGENT_TELEMETRY_HTTP_PORT", parse_port),
    ("otlp_http_port", "otlp_http_port", "AGENT_TELEMETRY_OTLP_HTTP_PORT", parse_port),
    ("otlp_grpc_port", "otlp_grpc_port", "AGENT_TELEMETRY_OTLP_GRPC_PORT", parse_port),
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
    ("idle_exit", "idle_exit", "AGENT_TELEMETRY_IDLE_EXIT", parse_idle_exit),
    ("max_events", "store.max_events", "AGENT_TELEMETRY_MAX_EVENTS", parse_positive_int),
    ("max_bytes", "store.max_bytes", "AGENT_TELEMETRY_MAX_BYTES", parse_buffer_bytes),
    (
        "retention_days",
        "store.retention_days",
        "AGENT_TELEMETRY_RETENTION_DAYS",
        parse_positive_int,
    ),
    ("allow_events", "privacy.allow_events", None, parse_names),
    ("allow_properties", "privacy.allow_properties", None, parse_names),
    ("capture_content", "capture_content", "AGENT_TELEMETRY_CAPTURE_CONTENT", parse_flag),
    ("prices", "prices", None, parse_price_overrides),
    ("do_not_track", None, "DO_NOT_TRACK", parse_flag),
    ("disabled", None, "AGENT_TELEMETRY_DISABLED", parse_flag),
    ("ci", None, "CI", parse_ci),
    (
        "log_level",
        "log_level",
        "AGENT_TELEMETRY_LOG_LEVEL",
        parse_choice(("debug", "info", "warning", "error")),
    ),
)
_SECRET_KEYS = ("posthog.api_key", "posthog.personal_api_key", "http.api_key")
_KNOWN_TABLES = {"posthog", "http", "file", "limits", "store", "privacy"}


class ConfigProblems(ConfigError):
    """Everything wrong with the settings at once, one problem a line.

    `fallback` is the config with each value that failed left at its default (a sender
    that cannot work becomes `none`): what the commands a user needs to look, stop and
    erase run with, after a warning. Only the daemon refuses to start on it.
    """

    def __init__(self, problems: list[ConfigProblem], fallback: Config) -> None:
        self.problems = tuple(problems)
        self.fallback = fallback
        super().__init__("\n".join(str(problem) for problem in problems))


class SecretsExposedError(ConfigProblems):
    """The one problem is that the config file holds an API key others can read."""


def load_config(
    environ: Mapping[str, str] = os.environ,
    paths: Paths | None = None,
    *,
    check_permissions: bool = True,
) -> Config:
    """Defaults, then the config file, then the environment; raises ConfigProblems
    naming every problem (SecretsExposedError when the only one is a config holding a
    key that others can read)."""
    config, problems = read_config(environ, paths, check_permissions=check_permissions)
    if problems:
        only_exposed = all(problem.exposes_secret for problem in problems)
        raise (SecretsExposedError if only_exposed else ConfigProblems)(problems, config)
    return config


def read_config(
    environ: Mapping[str, str] = os.environ,
    paths: Paths | None = None,
    *,
    check_permissions: bool = True,
) -> tuple[Config, list[ConfigProblem]]:
    """The config and every problem found on the way; never raises for a setting.

    A value that fails keeps its default, so one typo never hides the other settings,
    and the problems are listed together instead of one per attempt. A file others can
    change, or that holds a key others can read, is not used at all (config_safety.py):
    the config returned is then what every command and the daemon's checks agree on.
    `check_permissions` False reads the file whatever its permissions (the service
    installer, which only looks up the upload interval).
    """
    paths = paths or resolve_paths(environ)
    where = str(paths.config_file)
    problems: list[ConfigProblem] = []
    document = _read_toml(paths.config_file, problems)
    unsafe = []
    if check_permissions:
        held = [key for key in _SECRET_KEYS if _lookup(document, key)]
        unsafe = unsafe_file_problems(paths.config_file, held)
        problems.extend(unsafe)
    known = [key for _, key, _, _ in _SETTINGS if key]
    by_variable = {env: key for _, key, env, _ in _SETTINGS if key and env}
    problems.extend(unknown_keys(document, where, known, _KNOWN_TABLES, by_variable))
    if unsafe:
        # Its other problems are still listed, so that one fix does not reveal the next;
        # the values themselves are dropped.
        _parse_settings(document, {}, where, problems)
        document = what_an_unsafe_file_may_say(document)
    values, sources = _parse_settings(document, environ, where, problems)
    _imply_sender(values, sources)
    values["unknown_settings"] = tuple(p.key for p in problems if p.unknown_to_this_version)
    config = Config(paths=paths, sources=sources, **values)
    sender_problems = _sender_problems(config, where)
    if sender_problems:
        problems.extend(sender_problems)
        # A sender that cannot work sends nothing: never a half-configured upload.
        sources["sender"] = "default"
        config = Config(paths=paths, sources=sources, **{**values, "sender": "none"})
    return config, problems


def _parse_settings(
    document: Mapping[str, Any],
    environ: Mapping[str, str],
    where: str,
    problems: list[ConfigProblem],
) -> tuple[dict[str, Any], dict[str, str]]:
    """Each setting from the file, then from the environment (which wins), with its source;
    a value that fails to parse is a problem and keeps the default."""
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for name, toml_key, env_key, parse in _SETTINGS:
        candidates = []
        if toml_key is not None:
            raw = _lookup(document, toml_key)
            if raw is not None:
                candidates.append(("config", where, toml_key, raw))
        if env_key is not None:
            raw_env = environ.get(env_key)
            # DO_NOT_TRACK= and CI= set but empty still say something: "not set to a value".
            if raw_env is not None and (raw_env.strip() or name in ("do_not_track", "ci")):
                candidates.append(("env", "environment", env_key, raw_env))
        for source, place, key, raw in candidates:
            try:
                values[name] = parse(raw)
                sources[name] = source
            except ValueError as error:
                problems.append(ConfigProblem(place, key, str(error)))
    return values, sources


def _imply_sender(values: dict[str, Any], sources: dict[str, str]) -> None:
    """No sender named: a PostHog key implies posthog, else an endpoint implies http."""
    if "sender" in values:
        return
    if values.get("posthog_api_key"):
        values["sender"], sources["sender"] = "posthog", sources["posthog_api_key"]
    elif values.get("http_endpoint"):
        values["sender"], sources["sender"] = "http", sources["http_endpoint"]


def _read_toml(path: Path, problems: list[ConfigProblem]) -> dict[str, Any]:
    # Only a regular file is read: a named pipe there (anyone can make one in a shared
    # folder) would hold the daemon and every command in open() for good.
    try:
        with open_regular(path) as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        return {}
    except NotRegularFileError as error:
        problems.append(ConfigProblem(str(path), "", f"{error.strerror}, so it is not read"))
    except tomllib.TOMLDecodeError as error:
        problems.append(ConfigProblem(str(path), "", f"not valid TOML: {error}"))
    except OSError as error:
        problems.append(ConfigProblem(str(path), "", f"cannot read: {error.strerror}"))
    return {}


def _lookup(document: Mapping[str, Any], dotted: str) -> Any:
    node: Any = document
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def _sender_problems(config: Config, where: str) -> list[ConfigProblem]:
    # Events leave only over https (plain http to loopback alone): refused here, at load,
    # so the daemon does not start and every command says why.
    def at(key: str) -> str:
        return where if config.source_of(key) == "config" else "environment"

    # Say where the daemon looks: a key set in the user's shell does not reach a service.
    config_file = config.paths.config_file
    if config.sender == "posthog" and not config.posthog_api_key:
        places = key_places(config_file, "POSTHOG_API_KEY", "posthog.api_key")
        message = f"sender posthog needs POSTHOG_API_KEY: {places}"
        return [ConfigProblem(at("sender"), "sender", message)]
    if config.sender == "http" and not config.http_endpoint:
        places = key_places(config_file, "TELEMETRY_ENDPOINT", "http.endpoint")
        message = f"sender http needs TELEMETRY_ENDPOINT: {places}"
        return [ConfigProblem(at("sender"), "sender", message)]
    try:
        if config.sender == "posthog":
            check_endpoint(config.posthog_host, POSTHOG_HOST_SETTING)
        if config.sender == "http" and config.http_endpoint:
            check_endpoint(config.http_endpoint, HTTP_ENDPOINT_SETTING)
    except EndpointError as error:
        key = "posthog.host" if config.sender == "posthog" else "http.endpoint"
        field_name = "posthog_host" if config.sender == "posthog" else "http_endpoint"
        message = str(error).split(": ", 1)[-1]  # the key is named by the problem itself
        return [ConfigProblem(at(field_name), key, message)]
    return []
