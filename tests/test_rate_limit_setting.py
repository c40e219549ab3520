"""The `rate_limit` setting as a user writes it: rules in any unit up to a week, a TOML
list of rules, `off`; a value the limiter cannot honour is a config problem naming the
setting, never a daemon that fails to start."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent_telemetryd.config import RateRule, read_config


def problems_of(tmp_path: Path, toml: str) -> list[str]:
    config_file = tmp_path / "config.toml"
    config_file.write_text(toml)
    config_file.chmod(0o600)
    _, problems = read_config({"AGENT_TELEMETRY_HOME": str(tmp_path)})
    return [f"{problem.key}: {problem.message}" for problem in problems]


def rules_of(tmp_path: Path, toml: str) -> tuple[RateRule, ...]:
    config_file = tmp_path / "config.toml"
    config_file.write_text(toml)
    config_file.chmod(0o600)
    config, problems = read_config({"AGENT_TELEMETRY_HOME": str(tmp_path)})
    assert problems == []
    return config.rate_limit


@pytest.mark.parametrize("rule", ["1/100000000000000000d", "1/10000000d", "5/8d", "1/169h"])
def test_a_window_longer_than_a_week_is_a_problem_named_by_its_setting(
    tmp_path: Path, rule: str
) -> None:
    """A window of years put eligibility times past what SQLite's integer (or a timestamp)
    holds: the daemon then failed to start, or status showed events waiting until the
    year 56785."""
    assert problems_of(tmp_path, f'rate_limit = "60/min,{rule}"\n') == [
        f"rate_limit: '{rule}': a rule's window is at most 7d"
    ]


def test_a_week_and_huge_counts_are_rules(tmp_path: Path) -> None:
    assert rules_of(tmp_path, 'rate_limit = "5000/7d,99999999999999999999/min"\n') == (
        RateRule(5000, 604800.0),
        RateRule(99999999999999999999, 60.0),
    )


def test_a_toml_list_of_rules_reads_as_the_comma_list(tmp_path: Path) -> None:
    assert rules_of(tmp_path, 'rate_limit = ["60/min", "1000/h"]\n') == (
        RateRule(60, 60.0),
        RateRule(1000, 3600.0),
    )


def test_zero_events_a_minute_is_a_problem_that_says_what_to_use_instead(
    tmp_path: Path,
) -> None:
    assert problems_of(tmp_path, 'rate_limit = "0/min"\n') == [
        "rate_limit: '0/min' must allow at least one event (to upload nothing, use mode local)"
    ]
