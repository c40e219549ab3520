"""A shim's drop-count line, as the daemon reads it: counts under `client_*` reasons."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from agent_telemetry._handover import REPORTED_DROPS
from agent_telemetryd.client_drops import MAX_DROP_REASONS, SHIM_DROP_REASONS, client_drop_counts
from agent_telemetryd.events import EventError


def test_reasons_become_client_reasons_and_zero_counts_vanish() -> None:
    line = {"client_drops": {"backlog_full": 3, "exit_timeout": 0}, "agent": "planner"}
    assert client_drop_counts(line) == {"client_backlog_full": 3}


def test_a_reason_that_is_not_a_short_lowercase_word_is_counted_as_other() -> None:
    line = {"client_drops": {"Secret: sk-123": 2, "x" * 41: 1, "spool_full": 1}}
    assert client_drop_counts(line) == {"client_other": 3, "client_spool_full": 1}


def test_every_reason_a_shim_reports_is_kept_as_itself() -> None:
    """The daemon's list is written apart from the shims': a reason a shim adds and the list
    lacks would be counted as `client_other`, the loss no longer named."""
    handover = Path(__file__).resolve().parents[1] / "client_shim" / "node" / "handover.js"
    listed = re.search(r"const REPORTED = \[([^\]]*)\]", handover.read_text(encoding="utf-8"))
    assert listed is not None
    node = set(re.findall(r"'([a-z_]+)'", listed.group(1)))
    assert "spool_full" in node
    assert set(REPORTED_DROPS) | node <= SHIM_DROP_REASONS


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ({"client_drops": {"backlog_full": True}}, "whole number"),
        ({"client_drops": {"backlog_full": 1.5}}, "whole number"),
        ({"client_drops": {"backlog_full": -1}}, "whole number"),
        ({"client_drops": {"backlog_full": 2**41}}, "whole number"),
        ({"client_drops": [1]}, "must be an object"),
        ({"client_drops": {f"r{i}": 1 for i in range(MAX_DROP_REASONS + 1)}}, "at most"),
        ({"client_drops": {}, "agent": 7}, "'agent' must be a string"),
        ({"client_drops": {}, "event": "x"}, "unknown field"),
    ],
)
def test_a_malformed_line_is_an_error_that_names_the_problem(
    line: dict[str, Any], words: str
) -> None:
    with pytest.raises(EventError, match=words):
        client_drop_counts(line)
