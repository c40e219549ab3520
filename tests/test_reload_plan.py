"""What a reload applies and what waits for a restart, from two configs (pure)."""

from __future__ import annotations

from pathlib import Path

from agent_telemetryd.config import Config, RateRule, read_config
from agent_telemetryd.reload_plan import plan


def config(tmp_path: Path, toml: str, **env: str) -> Config:
    (tmp_path / "config.toml").write_text(toml)
    (tmp_path / "config.toml").chmod(0o600)
    loaded, problems = read_config({"AGENT_TELEMETRY_HOME": str(tmp_path), **env})
    assert problems == []
    return loaded


def test_live_settings_are_applied_and_the_rest_keeps_its_running_value(tmp_path: Path) -> None:
    before = config(tmp_path, "")
    after = config(
        tmp_path,
        'rate_limit = "6/s,20/10s"\nhttp_port = 9999\n[http]\nendpoint = "https://t.test"\n'
        'api_key = "secret-key"\n[store]\nmax_events = 10\n',
    )
    change = plan(before, after)
    assert change.applied == {"sender", "http_endpoint", "http_api_key", "rate_limit"}
    assert [c.setting for c in change.needs_restart] == ["http_port", "max_events"]
    shown = {c.setting: (c.before, c.after) for c in change.changes}
    assert shown["http_api_key"] == ("(unset)", "(set)")
    assert shown["rate_limit"] == ("60/min,1000/h", "6/s,20/10s")
    running = change.running
    assert running.rate_limit == (RateRule(6, 1.0), RateRule(20, 10.0))
    assert (running.http_port, running.max_events) == (7468, 5_000_000)  # as they run
    assert running.source_of("http_port") == "default"
    assert "secret-key" not in repr([c.as_dict() for c in change.changes])


def test_a_changed_key_is_said_changed_never_shown(tmp_path: Path) -> None:
    before = config(tmp_path, '[http]\nendpoint = "https://t.test"\napi_key = "old-key"\n')
    after = config(tmp_path, '[http]\nendpoint = "https://t.test"\napi_key = "new-key"\n')
    (change,) = plan(before, after).changes
    assert (change.setting, change.before, change.after) == ("http_api_key", "(set)", "(a new key)")


def test_keys_from_the_environment_are_pointed_at_a_restart(tmp_path: Path) -> None:
    before = config(tmp_path, "", TELEMETRY_ENDPOINT="https://t.test")
    after = config(tmp_path, "batch_size = 5\n", TELEMETRY_ENDPOINT="https://t.test")
    change = plan(before, after)
    assert change.applied == {"batch_size"}
    (note,) = change.notes
    assert note.startswith("http_endpoint, sender come from the daemon's environment")
