"""Configuration: defaults, then TOML, then environment; errors name the key and file."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent_telemetryd.config import (
    ConfigError,
    ConfigProblems,
    RateRule,
    SecretsExposedError,
    load_config,
    read_config,
)
from agent_telemetryd.consent import UnreadableConsent, decide, read_stored, write_stored


def load(tmp_path: Path, toml: str = "", **env: str):
    if toml:
        (tmp_path / "config.toml").write_text(toml)
        (tmp_path / "config.toml").chmod(0o600)
    return load_config({"AGENT_TELEMETRY_HOME": str(tmp_path), **env})


def test_defaults(tmp_path: Path) -> None:
    config = load(tmp_path)
    assert config.sender == "none"
    assert config.upload_interval == 3600
    assert config.batch_size == 100
    assert config.rate_limit == (RateRule(60, 60.0), RateRule(1000, 3600.0))
    assert config.http_port == 7468
    assert config.paths.database == tmp_path / "data" / "buffer.sqlite3"
    assert config.paths.ingest_socket == tmp_path / "run" / "ingest.sock"
    assert config.source_of("batch_size") == "default"


def test_environment_overrides_the_file_and_records_the_source(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        'batch_size = 50\nupload_interval = "15m"\nrate_limit = "10/s"\n',
        AGENT_TELEMETRY_BATCH_SIZE="20",
    )
    assert (config.batch_size, config.source_of("batch_size")) == (20, "env")
    assert (config.upload_interval, config.source_of("upload_interval")) == (900, "config")
    assert config.rate_limit == (RateRule(10, 1.0),)


def test_sender_is_inferred_from_the_keys_given(tmp_path: Path) -> None:
    assert load(tmp_path, POSTHOG_API_KEY="phc_x").sender == "posthog"
    assert load(tmp_path, TELEMETRY_ENDPOINT="https://t.example").sender == "http"
    assert load(tmp_path, AGENT_TELEMETRY_RATE_LIMIT="off").rate_limit == ()
    assert load(tmp_path, AGENT_TELEMETRY_HTTP_PORT="off").http_port is None


@pytest.mark.parametrize(
    ("toml", "env", "message"),
    [
        ('batch_size = "many"\n', {}, "batch_size: 'many' is not a whole number"),
        ("batch_size = 0\n", {}, "batch_size: must be greater than zero"),
        ('http_host = "192.168.1.10"\n', {}, "not a loopback address"),
        ("[store]\nmax_rows = 3\n", {}, "store.max_rows: unknown setting"),
        ("not toml = = 3\n", {}, "not valid TOML"),
        ("", {"AGENT_TELEMETRY_UPLOAD_INTERVAL": "soon"}, "AGENT_TELEMETRY_UPLOAD_INTERVAL"),
        ("", {"AGENT_TELEMETRY_HTTP_PORT": "70000"}, "not a port number"),
        ("", {"AGENT_TELEMETRY_SENDER": "posthog"}, "sender posthog needs POSTHOG_API_KEY"),
        ("", {"AGENT_TELEMETRY_MODE": "maybe"}, "AGENT_TELEMETRY_MODE"),
    ],
)
def test_errors_name_the_setting(tmp_path: Path, toml: str, env: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        load(tmp_path, toml, **env)
    if toml:
        assert str(tmp_path / "config.toml") in str(caught.value) or "AGENT_" in str(caught.value)


def test_every_problem_is_listed_at_once_with_a_suggestion(tmp_path: Path) -> None:
    config_file = tmp_path / "config.toml"
    with pytest.raises(ConfigProblems) as caught:
        load(
            tmp_path,
            'upload_intervall = "15m"\n'
            "batch_size = 50\n"
            'rate_limit = "lots"\n'
            'AGENT_TELEMETRY_SENDER = "file"\n'
            '[posthog]\napi_kye = "phc_x"\n'
            '[privasy]\nallow_events = ["a"]\n',
            AGENT_TELEMETRY_HTTP_PORT="seventy",
        )
    assert str(caught.value).splitlines() == [
        f"{config_file}: upload_intervall: unknown setting; did you mean upload_interval?",
        f"{config_file}: AGENT_TELEMETRY_SENDER: unknown setting; did you mean sender?",
        f"{config_file}: posthog.api_kye: unknown setting; did you mean posthog.api_key?",
        f"{config_file}: privasy.allow_events: unknown setting; did you mean privacy.allow_events?",
        f"{config_file}: rate_limit: 'lots' is not a rate (use e.g. 60/min,1000/h or off)",
        "environment: AGENT_TELEMETRY_HTTP_PORT: 'seventy' is not a port number (0-65535, or off)",
    ]
    # What loaded stays: the commands that still run use it, with failures at defaults.
    fallback = caught.value.fallback
    assert (fallback.batch_size, fallback.source_of("batch_size")) == (50, "config")
    assert fallback.upload_interval == 3600 and fallback.http_port == 7468


def test_a_misplaced_key_is_pointed_at_its_tables(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text('api_key = "k"\n')
    _, problems = read_config({"AGENT_TELEMETRY_HOME": str(tmp_path)}, check_permissions=False)
    assert [f"{p.key}: {p.message}" for p in problems] == [
        "api_key: unknown setting; did you mean http.api_key or posthog.api_key?"
    ]


def test_a_sender_that_cannot_work_falls_back_to_none(tmp_path: Path) -> None:
    config, problems = read_config(
        {"AGENT_TELEMETRY_HOME": str(tmp_path), "TELEMETRY_ENDPOINT": "http://backend.example"}
    )
    assert config.sender == "none"
    assert [(p.where, p.key) for p in problems] == [("environment", "http.endpoint")]
    assert "is not loopback; use https://" in problems[0].message


def test_a_readable_config_with_a_key_is_its_own_error(tmp_path: Path) -> None:
    config_file = tmp_path / "config.toml"
    config_file.write_text('[http]\napi_key = "k"\nendpoint = "https://t.test"\n')
    config_file.chmod(0o644)
    with pytest.raises(SecretsExposedError, match="chmod 600") as caught:
        load_config({"AGENT_TELEMETRY_HOME": str(tmp_path)})
    # The file is not used: what the commands run with has neither its key nor its sender.
    fallback = caught.value.fallback
    assert (fallback.sender, fallback.http_api_key, fallback.http_endpoint) == ("none", None, None)
    config_file.write_text('batch_size = 0\n[http]\napi_key = "k"\n')
    with pytest.raises(ConfigProblems) as both:
        load_config({"AGENT_TELEMETRY_HOME": str(tmp_path)})
    assert not isinstance(both.value, SecretsExposedError)
    assert [p.exposes_secret for p in both.value.problems] == [True, False]


@pytest.mark.parametrize(
    ("value", "capped"),
    [
        ("true", True),
        ("1", True),
        ("no", True),
        ("off", True),
        ("yes", True),
        ("0", False),
        ("false", False),
        ("FALSE", False),
        ("", False),
    ],
)
def test_ci_caps_upload_for_any_non_empty_value_but_0_or_false(
    tmp_path: Path, value: str, capped: bool
) -> None:
    stored, _ = write_stored(tmp_path / "consent.json", "upload", via="test")
    state = decide(load(tmp_path, CI=value), stored)
    assert (state.mode, state.source) == (("local", "CI") if capped else ("upload", "command"))


def test_consent_precedence_and_caps(tmp_path: Path) -> None:
    consent_file = tmp_path / "consent.json"
    assert decide(load(tmp_path), None).source == "default"
    assert decide(load(tmp_path), None).mode == "local"
    stored, _ = write_stored(consent_file, "upload", via="test")
    assert read_stored(consent_file) == stored
    assert decide(load(tmp_path), stored).mode == "upload"
    assert decide(load(tmp_path, DO_NOT_TRACK="1"), stored).source == "DO_NOT_TRACK"
    assert decide(load(tmp_path, CI="true"), stored).mode == "local"
    assert decide(load(tmp_path, CI="false"), stored).mode == "upload"
    assert decide(load(tmp_path, CI="1", AGENT_TELEMETRY_MODE="upload"), None).mode == "upload"
    assert decide(load(tmp_path, AGENT_TELEMETRY_DISABLED="1"), stored).mode == "off"
    assert decide(load(tmp_path, AGENT_TELEMETRY_MODE="off"), stored).source == "env"


def test_consent_history_keeps_time_and_policy_version(tmp_path: Path) -> None:
    path = tmp_path / "consent.json"
    write_stored(path, "upload", via="cli")
    stored, _ = write_stored(path, "local", via="cli")
    assert [h["mode"] for h in stored.history] == ["upload", "local"]
    assert all(h["policy_version"] == 1 and h["at"].endswith("Z") for h in stored.history)
    path.write_text("{garbage")
    unreadable = read_stored(path)  # unreadable: off decides, not the default (local)
    assert isinstance(unreadable, UnreadableConsent)
    assert decide(load(tmp_path), unreadable).mode == "off"


def test_paths_follow_the_platform(tmp_path: Path) -> None:
    from agent_telemetryd.paths import resolve_paths

    mac = resolve_paths({"HOME": "/Users/ada", "TMPDIR": "/var/folders/xy/T/"}, "darwin")
    support = Path("/Users/ada/Library/Application Support/agent-telemetry")
    assert mac.config_file == support / "config.toml"
    assert mac.database == support / "buffer.sqlite3"
    assert mac.ingest_socket == Path("/var/folders/xy/T/agent-telemetry/ingest.sock")
    linux = resolve_paths({"XDG_RUNTIME_DIR": "/run/user/1000"}, "linux")
    assert linux.ingest_socket == Path("/run/user/1000/agent-telemetry/ingest.sock")
    assert linux.database.name == "buffer.sqlite3"
    assert resolve_paths({}, "linux").runtime_dir.name.startswith("agent-telemetry-")


def test_keys_stay_out_of_the_configs_repr(tmp_path: Path) -> None:
    """A Config printed in a log line or a traceback shows no API key."""
    config = load(
        tmp_path,
        POSTHOG_API_KEY="phc_secret_capture_key",
        POSTHOG_PERSONAL_API_KEY="phx_secret_personal_key",
        TELEMETRY_API_KEY="secret-ingest-key",
    )
    assert config.posthog_api_key == "phc_secret_capture_key"
    shown = repr(config)
    assert "posthog_host=" in shown  # the rest is still there to read
    for secret in ("phc_secret_capture_key", "phx_secret_personal_key", "secret-ingest-key"):
        assert secret not in shown
