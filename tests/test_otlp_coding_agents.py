"""A coding agent with built-in export, as its documentation describes what it sends, against
the real daemon: its events arrive under its name with their numbers as numbers, its
content stays out of the buffer, its metrics keep their temporality, and the dashboard
counts its requests' durations."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.proto.metrics.v1.metrics_pb2 import AggregationTemporality, Metric

from agent_telemetryd.cli.api_client import ApiClient
from tests.daemon_process import DaemonProcess
from tests.otlp_messages import START_NS, kvs, logs, metrics, record
from tests.test_otlp_receiver import PROTOBUF, assert_balanced, buffer_bytes, otlp_rows, post

CLAUDE_CODE = {"service.name": "claude-code", "service.version": "2.1.0"}
COMMON = {  # on every Claude Code event
    "session.id": "1f0c9a4e-0000-4000-8000-000000000001",
    "prompt.id": "7c1d2e3f-0000-4000-8000-000000000002",
    "terminal.type": "xterm-256color",
}
CANARY_COMMAND = "cat /home/alice/notes/canary-command-3b91.txt"


def claude_event(name: str, at_ns: int, **attributes: object) -> Any:
    """A log record as Claude Code emits one: the full name in the body, the short one in
    `event.name`, every value as text."""
    return record(
        body=f"claude_code.{name}",
        time_unix_nano=at_ns,
        attributes={
            **COMMON,
            "event.name": name,
            "event.timestamp": "2026-11-24T21:00:00.123Z",
            **{key: str(value) for key, value in attributes.items()},
        },
    )


def delta_counter(name: str, unit: str, points: list[tuple[dict[str, Any], float]]) -> Metric:
    metric = Metric(name=name, unit=unit)
    metric.sum.aggregation_temporality = AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA
    metric.sum.is_monotonic = True
    for attributes, value in points:
        point = metric.sum.data_points.add(
            start_time_unix_nano=START_NS - 60 * 10**9, time_unix_nano=START_NS, as_double=value
        )
        point.attributes.extend(kvs({**COMMON, **attributes}))
    return metric


def test_claude_codes_documented_events_arrive_as_its_events(daemon: DaemonProcess) -> None:
    url = daemon.http_url()
    second = 10**9
    events = logs(
        claude_event(
            "api_request",
            START_NS,
            model="claude-sonnet-4-5",
            input_tokens=1520,
            output_tokens=312,
            cache_read_tokens=9000,
            cache_creation_tokens=120,
            cost_usd=0.0123,
            duration_ms=2314,
            speed="normal",
        ),
        claude_event(
            "api_request",
            START_NS + second,
            model="claude-sonnet-4-5",
            input_tokens=80,
            output_tokens=40,
            cache_read_tokens=10520,
            cache_creation_tokens=0,
            cost_usd=0.0041,
            duration_ms=1180,
        ),
        claude_event(
            "tool_result",
            START_NS + 2 * second,
            tool_name="Bash",
            success="true",
            duration_ms=412,
            tool_parameters=f'{{"bash_command": "cat", "full_command": "{CANARY_COMMAND}"}}',
            tool_result_size_bytes=2048,
        ),
        claude_event("user_prompt", START_NS + 3 * second, prompt_length=42, prompt="<REDACTED>"),
        resource=CLAUDE_CODE,
    )
    status, _, _ = post(f"{url}/v1/logs", events.SerializeToString(), PROTOBUF)
    assert status == 200
    usage = metrics(
        delta_counter(
            "claude_code.token.usage",
            "tokens",
            [({"model": "claude-sonnet-4-5", "type": "input"}, 1600.0)],
        ),
        delta_counter("claude_code.cost.usage", "USD", [({"model": "claude-sonnet-4-5"}, 0.0164)]),
        resource=CLAUDE_CODE,
    )
    status, _, _ = post(f"{url}/v1/metrics", usage.SerializeToString(), PROTOBUF)
    assert status == 200

    rows = otlp_rows(daemon)
    assert {row["agent"] for row in rows} == {"claude-code"}
    names = sorted(row["event"] for row in rows)
    assert names == [
        "claude_code.api_request",
        "claude_code.api_request",
        "claude_code.cost.usage",
        "claude_code.token.usage",
        "claude_code.tool_result",
        "claude_code.user_prompt",
        "otel.resource",
    ]
    requests = [row for row in rows if row["event"] == "claude_code.api_request"]
    first = requests[0]["properties"]
    # Stored under the GenAI convention names; Claude Code's input tokens leave out the
    # cached ones, the stored ones count them in (as every other source does).
    assert first["gen_ai.request.model"] == "claude-sonnet-4-5"
    assert first["gen_ai.usage.input_tokens"] == 1520 + 9000 + 120
    assert first["gen_ai.usage.output_tokens"] == 312
    assert first["gen_ai.usage.cache_read.input_tokens"] == 9000
    assert first["gen_ai.usage.cache_creation.input_tokens"] == 120
    assert (first["cost_usd"], first["duration_ms"]) == (0.0123, 2314)
    assert first["prompt.id"] == COMMON["prompt.id"]
    assert requests[0]["timestamp"] == "2026-11-24T21:00:00.123Z"

    tool = next(row for row in rows if row["event"] == "claude_code.tool_result")["properties"]
    assert (tool["gen_ai.tool.name"], tool["success"], tool["duration_ms"]) == ("Bash", "true", 412)
    assert tool["tool_parameters"].startswith("[content: ")  # the command it ran is content
    prompt = next(row for row in rows if row["event"] == "claude_code.user_prompt")
    assert prompt["properties"]["prompt"] == "[content: 10 chars]"
    assert CANARY_COMMAND.encode() not in buffer_bytes(daemon)

    tokens = next(row for row in rows if row["event"] == "claude_code.token.usage")["properties"]
    assert (tokens["metric.temporality"], tokens["metric.value"]) == ("delta", 1600.0)
    assert (tokens["type"], tokens["metric.unit"]) == ("input", "tokens")

    # The dashboard counts the requests' durations as it does any event's.
    durations = ApiClient(daemon.api_socket).json("GET", "/dashboard/api/durations?since=0")
    by_event = {item["name"]: item for item in durations["by_event"]}
    assert by_event["claude_code.api_request"]["count"] == 2
    # To 3 significant digits, as the dashboard keeps durations.
    assert by_event["claude_code.api_request"]["max_ms"] == pytest.approx(2314, rel=0.005)
    assert by_event["claude_code.tool_result"]["count"] == 1
    assert assert_balanced(daemon)["rejected"] == 0
