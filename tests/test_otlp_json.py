"""OTLP JSON as the spec writes it (hex ids, int64 as strings, enums as numbers), the
binary encoding's garbage, and the answers the receiver gives in either encoding."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import orjson
import pytest
from google.rpc.status_pb2 import Status
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from agent_telemetryd.otlp.answers import export_answer, status_answer
from agent_telemetryd.otlp.decode import JSON, PROTOBUF, UndecodableError, decode
from agent_telemetryd.otlp.signals import LOGS, METRICS, TRACES
from tests.otlp_messages import PARENT, SPAN, START_NS, TRACE, documents, span, traces

SPAN_JSON: dict[str, Any] = {
    "traceId": TRACE.hex().upper(),  # the spec: hex, case-insensitive
    "spanId": SPAN.hex(),
    "parentSpanId": PARENT.hex(),
    "name": "chat gpt-4o",
    "kind": 3,
    "startTimeUnixNano": str(START_NS),
    "endTimeUnixNano": str(START_NS + 812_345_000),
    "attributes": [
        {"key": "gen_ai.request.model", "value": {"stringValue": "gpt-4o"}},
        {"key": "gen_ai.usage.input_tokens", "value": {"intValue": "1200"}},
    ],
    "status": {"code": 2, "message": "boom"},
}


def trace_json(*spans: dict[str, Any]) -> bytes:
    return orjson.dumps(
        {
            "resourceSpans": [
                {
                    "resource": {
                        "attributes": [{"key": "service.name", "value": {"stringValue": "planner"}}]
                    },
                    "scopeSpans": [{"scope": {"name": "tests"}, "spans": list(spans)}],
                }
            ]
        }
    )


def test_a_span_in_otlp_json_maps_as_the_same_span_in_protobuf_does() -> None:
    from_json = decode(TRACES, trace_json(SPAN_JSON), JSON)
    proto = traces(
        span(
            parent_span_id=PARENT,
            kind=Span.SPAN_KIND_CLIENT,
            attributes={"gen_ai.request.model": "gpt-4o", "gen_ai.usage.input_tokens": 1200},
            status={"code": 2, "message": "boom"},
        )
    )
    from_proto = decode(TRACES, proto.SerializeToString(), PROTOBUF)
    assert from_json.refused == []
    assert documents(from_json) == documents(from_proto)
    (event,) = documents(from_json)
    assert event["trace_id"] == TRACE.hex()  # lowercase, as the wire wants it
    assert event["properties"]["gen_ai.usage.input_tokens"] == 1200  # int64 string → number
    assert event["properties"]["status"] == "error"


def test_enum_names_numbers_as_numbers_snake_case_keys_and_unknown_fields_are_read() -> None:
    lenient = dict(SPAN_JSON)
    lenient.pop("startTimeUnixNano")
    lenient["start_time_unix_nano"] = START_NS  # a number, under the proto name
    lenient["kind"] = "SPAN_KIND_CLIENT"
    lenient["someFutureField"] = {"x": 1}
    (event,) = documents(decode(TRACES, trace_json(lenient), JSON))
    (expected,) = documents(decode(TRACES, trace_json(SPAN_JSON), JSON))
    assert event == expected


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"traceId": "not hex at all, not at all!!"}, "no valid trace_id"),
        ({"traceId": "5B8E"}, "no valid trace_id"),
        ({"spanId": 12}, "no valid span_id"),
        ({"startTimeUnixNano": "soon"}, "span is not valid OTLP JSON (field startTimeUnixNano)"),
        ({"attributes": [{"key": "a", "value": {"intValue": "x"}}]}, "(field attributes)"),
        ({"name": ""}, "span has no name"),
    ],
)
def test_a_bad_span_in_json_is_refused_and_its_neighbours_kept(
    change: dict[str, Any], reason: str
) -> None:
    bad = {**SPAN_JSON, "spanId": "0000000000000003", **change}
    good = {**SPAN_JSON, "spanId": "0000000000000001"}
    decoded = decode(TRACES, trace_json(good, bad, "not an object"), JSON)  # type: ignore[arg-type]
    assert [d["span_id"] for d in documents(decoded)] == ["0000000000000001"]
    assert decoded.items == 3
    assert len(decoded.refused) == 2 and "span is not a JSON object" in decoded.refused
    reason_in(decoded.refused, reason)


def reason_in(reasons: list[str], part: str) -> str:
    (found,) = [reason for reason in reasons if part in reason]
    return found


def test_a_refusal_reason_never_quotes_the_value() -> None:
    secret = "sk-live-do-not-echo-me"
    decoded = decode(TRACES, trace_json({**SPAN_JSON, "startTimeUnixNano": secret}), JSON)
    assert decoded.refused and secret not in decoded.refused[0]


def test_links_in_json_get_their_hex_ids() -> None:
    linked = {**SPAN_JSON, "links": [{"traceId": "AB" * 16, "spanId": "cd" * 8}]}
    (event,) = documents(decode(TRACES, trace_json(linked), JSON))
    assert event["properties"]["span.links"] == [{"trace_id": "ab" * 16, "span_id": "cd" * 8}]


def test_logs_in_json_keep_their_trace_context() -> None:
    body = {
        "resourceLogs": [
            {
                "resource": {
                    "attributes": [{"key": "service.name", "value": {"stringValue": "codex"}}]
                },
                "scopeLogs": [
                    {
                        "logRecords": [
                            {
                                "timeUnixNano": str(START_NS),
                                "severityNumber": 9,
                                "severityText": "INFO",
                                "eventName": "codex.tool_decision",
                                "traceId": TRACE.hex(),
                                "spanId": SPAN.hex().upper(),
                                "body": {"stringValue": "approved"},
                                "attributes": [
                                    {"key": "tool_name", "value": {"stringValue": "shell"}}
                                ],
                            },
                            {"traceId": "xyz", "body": {"stringValue": "no trace"}},
                        ]
                    }
                ],
            }
        ]
    }
    decoded = decode(LOGS, orjson.dumps(body), JSON)
    event, untraced = documents(decoded)
    assert (event["event"], event["agent"]) == ("codex.tool_decision", "codex")
    assert (event["trace_id"], event["span_id"]) == (TRACE.hex(), SPAN.hex())
    assert event["properties"]["log.body"] == "approved"
    # An id that is not hex is an invalid one: the record belongs to no trace, and is kept.
    assert decoded.refused == []
    assert "trace_id" not in untraced and untraced["properties"]["log.body"] == "no trace"


def metric_json(points: list[Any]) -> bytes:
    return orjson.dumps(
        {
            "resourceMetrics": [
                {
                    "scopeMetrics": [
                        {
                            "metrics": [
                                {
                                    "name": "claude_code.cost.usage",
                                    "unit": "USD",
                                    "sum": {
                                        "aggregationTemporality": 1,
                                        "isMonotonic": True,
                                        "dataPoints": points,
                                    },
                                },
                                {
                                    "name": "latency",
                                    "histogram": {
                                        "aggregationTemporality": 2,
                                        "dataPoints": [
                                            {
                                                "timeUnixNano": str(START_NS),
                                                "count": "3",
                                                "bucketCounts": ["1", "2"],
                                                "explicitBounds": [0.5],
                                                "exemplars": [
                                                    {"traceId": TRACE.hex(), "asInt": "1"}
                                                ],
                                            }
                                        ],
                                    },
                                },
                            ]
                        }
                    ]
                }
            ]
        }
    )


def test_metric_points_in_json_each_stand_or_fall_alone() -> None:
    good = {"timeUnixNano": str(START_NS), "asDouble": 0.0123}
    bad = {"timeUnixNano": str(START_NS), "asInt": "lots"}
    decoded = decode(METRICS, metric_json([good, bad]), JSON)
    cost, latency = documents(decoded)
    assert cost["properties"]["metric.value"] == 0.0123
    assert cost["properties"]["metric.temporality"] == "delta"
    assert latency["properties"]["metric.bucket_counts"] == [1, 2]
    assert latency["properties"]["metric.temporality"] == "cumulative"
    assert decoded.refused == ["data point is not valid OTLP JSON (field asInt)"]
    assert "agent" not in cost  # no resource attributes at all: the request's source names it


@pytest.mark.parametrize(
    "body",
    [
        b"\x00\x01garbage",
        b"[1, 2]",
        b'{"resourceSpans": {"not": "an array"}}',
        b'{"resourceSpans": [{"resource": {"attributes": 7}}]}',
        b'{"resourceSpans": [{"scopeSpans": [{"spans": "nope"}]}]}',
    ],
)
def test_a_json_body_that_is_not_otlp_is_undecodable(body: bytes) -> None:
    with pytest.raises(UndecodableError):
        decode(TRACES, body, JSON)


def test_a_binary_body_that_is_not_protobuf_is_undecodable() -> None:
    with pytest.raises(UndecodableError, match="not a binary ExportTraceServiceRequest"):
        decode(TRACES, b"\xff\xff\xff\xff garbage", PROTOBUF)


def test_an_empty_request_is_success_with_nothing_in_it() -> None:
    decoded = decode(TRACES, b"", PROTOBUF)
    assert (documents(decoded), decoded.refused) == ([], [])
    assert documents(decode(TRACES, b"{}", JSON)) == []


# --- answers ---


def test_full_success_leaves_partial_success_unset_in_both_encodings() -> None:
    assert export_answer(TRACES, [], 3, PROTOBUF) == b""
    assert orjson.loads(export_answer(TRACES, [], 3, JSON)) == {}


def test_partial_success_counts_and_explains_the_refused_items() -> None:
    refused = ["span has no name", "span has no name", "span has no start_time_unix_nano"]
    answer = ExportTraceServiceResponse.FromString(export_answer(TRACES, refused, 10, PROTOBUF))
    assert answer.partial_success.rejected_spans == 3
    assert answer.partial_success.error_message == (
        "3 of 10 spans rejected: span has no name (2); span has no start_time_unix_nano (1)"
    )
    as_json = orjson.loads(export_answer(LOGS, ["x"], 1, JSON))
    assert as_json == {
        "partialSuccess": {
            "rejectedLogRecords": "1",
            "errorMessage": "1 of 1 log records rejected: x (1)",
        }
    }


def test_a_failure_is_a_google_rpc_status_in_the_request_encoding() -> None:
    assert Status.FromString(status_answer("bad body", PROTOBUF)).message == "bad body"
    assert orjson.loads(status_answer("bad body", JSON)) == {"message": "bad body"}


OTLP_KEYS = ["resourceSpans", "scopeSpans", "spans", "traceId", "spanId", "name", "attributes",
             "key", "value", "stringValue", "kvlistValue", "values", "startTimeUnixNano",
             "links", "status", "code", "resource", "scope", "kind", "events"]  # fmt: skip
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(OTLP_KEYS), children, max_size=5)
    ),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(document=json_values)
def test_any_json_is_events_refusals_or_undecodable_never_a_crash(document: Any) -> None:
    try:
        decoded = decode(TRACES, json.dumps(document).encode(), JSON)
    except UndecodableError:
        return
    for event in documents(decoded):
        assert event["event"] and event["uuid"]


@settings(max_examples=300, deadline=None)
@given(body=st.binary(max_size=200))
def test_any_bytes_are_events_refusals_or_undecodable_never_a_crash(body: bytes) -> None:
    for signal in (TRACES, LOGS, METRICS):
        with contextlib.suppress(UndecodableError):
            decode(signal, body, PROTOBUF)
