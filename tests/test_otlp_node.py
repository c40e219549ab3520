"""OpenTelemetry's Node SDK and OTLP/HTTP trace exporter, unchanged, against the real daemon.

The packages are the dev dependencies of `tests/node_otlp/` (pinned by its lock file),
installed there with `npm ci` the first time and again only when the lock file changes.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import subprocess
from pathlib import Path

import pytest

from tests.daemon_process import DaemonProcess
from tests.test_otlp_receiver import assert_balanced, otlp_rows
from tests.tools import required_tool

PACKAGE = Path(__file__).resolve().parent / "node_otlp"
STAMP = PACKAGE / "node_modules" / ".installed-from-lock"


def install_node_packages() -> None:
    """`npm ci` once per lock file; two test runs at once take turns (a file lock)."""
    required_tool("nodejs", "node")
    required_tool("npm", "npm")
    lock = hashlib.sha256((PACKAGE / "package-lock.json").read_bytes()).hexdigest()
    with (PACKAGE / ".install.lock").open("w") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)
        if STAMP.exists() and STAMP.read_text() == lock:
            return
        result = subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund"],
            cwd=PACKAGE,
            capture_output=True,
            text=True,
            timeout=240,
        )
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
        STAMP.write_text(lock)


@pytest.mark.timeout(300)
def test_the_node_sdk_exporter_lands_nested_spans_with_the_mapped_fields(
    daemon: DaemonProcess,
) -> None:
    install_node_packages()
    result = subprocess.run(
        ["node", str(PACKAGE / "export_spans.js")],
        env={**daemon.env, "OTEL_EXPORTER_OTLP_ENDPOINT": daemon.http_url()},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    ids = json.loads(result.stdout)

    rows = otlp_rows(daemon)
    by_name = {row["event"]: row for row in rows}
    assert sorted(by_name) == sorted(
        ["invoke_agent planner", "chat gpt-4o", "execute_tool search", "otel.resource"]
    )
    assert len(rows) == 4
    assert {row["agent"] for row in rows} == {"node-agent"}
    root, chat, tool = (
        by_name[n] for n in ("invoke_agent planner", "chat gpt-4o", "execute_tool search")
    )
    assert (root["span_id"], chat["span_id"], tool["span_id"]) == (
        ids["root"],
        ids["chat"],
        ids["tool"],
    )
    assert {root["trace_id"], chat["trace_id"], tool["trace_id"]} == {ids["trace"]}
    assert root["parent_span_id"] is None
    assert chat["parent_span_id"] == tool["parent_span_id"] == ids["root"]
    assert chat["properties"]["span.kind"] == "client"
    assert chat["properties"]["gen_ai.request.model"] == "gpt-4o"
    assert chat["properties"]["gen_ai.usage.input_tokens"] == 1200
    assert chat["properties"]["gen_ai.usage.output_tokens"] == 85
    assert chat["properties"]["otel.scope.name"] == "node-agent"
    assert 0 < chat["properties"]["duration_ms"] <= root["properties"]["duration_ms"]
    assert tool["properties"]["status"] == "error"
    assert tool["properties"]["error.type"] == "TypeError"
    assert tool["properties"]["exception.message"] == "query was empty"
    resource = by_name["otel.resource"]["properties"]
    assert (resource["service.name"], resource["service.version"]) == ("node-agent", "1.2.3")
    assert assert_balanced(daemon)["rejected"] == 0
