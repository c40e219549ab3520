"""OTLP items → the daemon's wire events, from requests built with the official classes.

Every event the mapping makes must be one the daemon's own validation accepts: that is
checked for each, so a mapping that drifts from the wire contract fails here, not in a
user's buffer.
"""

from __future__ import annotations

import uuid

import pytest
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    AggregationTemporality,
    Exemplar,
    ExponentialHistogramDataPoint,
    HistogramDataPoint,
    Metric,
    NumberDataPoint,
    SummaryDataPoint,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from agent_telemetryd.events import Limits, validate
from agent_telemetryd.otlp.decode import PROTOBUF, decode
from agent_telemetryd.otlp.decoded import Decoded
from agent_telemetryd.otlp.identity import identity_uuid, span_uuid
from agent_telemetryd.otlp.resources import RESOURCE_EVENT, resource_event
from agent_telemetryd.otlp.signals import LOGS, METRICS, TRACES, Signal
from agent_telemetryd.otlp.values import duration_ms
from agent_telemetryd.privacy.content import ContentMask
from tests.otlp_messages import (
    PARENT,
    SPAN,
    START_MS,
    START_NS,
    TRACE,
    documents,
    kvs,
    logs,
    metrics,
    record,
    span,
    traces,
)

CUMULATIVE = AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE
DELTA = AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA


def decoded_from(signal: Signal, request: object) -> Decoded:
    decoded = decode(signal, request.SerializeToString(), PROTOBUF)  # type: ignore[attr-defined]
    for document in documents(decoded):
        validate(document, Limits())  # raises if the daemon would refuse it
    return decoded


def one_event(signal: Signal, request: object) -> dict:
    decoded = decoded_from(signal, request)
    assert decoded.refused == []
    (document,) = documents(decoded)
    return document


# --- spans ---


def test_a_span_becomes_an_event_with_its_ids_start_duration_kind_and_attributes() -> None:
    request = traces(
        span(
            parent_span_id=PARENT,
            kind=Span.SPAN_KIND_CLIENT,
            attributes={
                "gen_ai.request.model": "gpt-4o",
                "gen_ai.usage.input_tokens": 1200,
                "gen_ai.usage.output_tokens": 85,
                "temperature": 0.2,
                "streamed": True,
            },
        )
    )
    event = one_event(TRACES, request)
    assert event["event"] == "chat gpt-4o"
    assert event["timestamp"] == "2026-11-24T21:00:00.123Z"
    assert event["agent"] == "planner"
    assert (event["trace_id"], event["span_id"], event["parent_span_id"]) == (
        TRACE.hex(),
        SPAN.hex(),
        PARENT.hex(),
    )
    assert event["properties"] == {
        "otel.scope.name": "tests",
        "gen_ai.request.model": "gpt-4o",
        "gen_ai.usage.input_tokens": 1200,
        "gen_ai.usage.output_tokens": 85,
        "temperature": 0.2,
        "streamed": True,
        "duration_ms": 812.345,
        "span.kind": "client",
    }


def test_a_root_span_has_no_parent_and_an_unfinished_one_no_duration() -> None:
    event = one_event(TRACES, traces(span(end_time_unix_nano=0)))
    assert "parent_span_id" not in event
    assert "duration_ms" not in event["properties"]


def test_a_failed_span_says_error_and_the_exception_type_with_message_and_stack() -> None:
    failed = span(
        status=Status(code=Status.STATUS_CODE_ERROR, message="ValueError: bad input"),
    )
    exception = failed.events.add(name="exception", time_unix_nano=START_NS + 5)
    exception.attributes.extend(
        kvs(
            {
                "exception.type": "ValueError",
                "exception.message": "bad input",
                "exception.stacktrace": "Traceback (most recent call last): ...",
            }
        )
    )
    properties = one_event(TRACES, traces(failed))["properties"]
    assert properties["status"] == "error"
    assert properties["error.type"] == "ValueError"
    assert properties["status.message"] == "ValueError: bad input"
    assert properties["exception.message"] == "bad input"
    assert properties["exception.stacktrace"].startswith("Traceback")
    assert "span.events" not in properties  # the exception event is on the span itself


def test_the_span_error_type_attribute_wins_over_the_exception_event() -> None:
    failed = span(
        status=Status(code=Status.STATUS_CODE_ERROR),
        attributes={"error.type": "timeout"},
    )
    failed.events.add(name="exception").attributes.extend(kvs({"exception.type": "OSError"}))
    properties = one_event(TRACES, traces(failed))["properties"]
    assert (properties["status"], properties["error.type"]) == ("error", "timeout")


def test_exception_text_that_is_not_a_string_becomes_one_for_the_scrubber() -> None:
    failed = span(status=Status(code=Status.STATUS_CODE_ERROR))
    failed.events.add(name="exception").attributes.extend(
        kvs({"exception.message": {"path": "/home/alice/x"}, "exception.stacktrace": 42})
    )
    properties = one_event(TRACES, traces(failed))["properties"]
    assert properties["exception.message"] == '{"path":"/home/alice/x"}'
    assert properties["exception.stacktrace"] == "42"


def test_an_ok_span_says_ok_and_an_unset_status_says_nothing() -> None:
    ok = one_event(TRACES, traces(span(status=Status(code=Status.STATUS_CODE_OK))))
    assert ok["properties"]["status"] == "ok"
    unset = one_event(TRACES, traces(span()))
    assert "status" not in unset["properties"]


def test_other_span_events_and_links_are_kept_in_lists() -> None:
    built = span()
    built.events.add(name="gen_ai.content.prompt", time_unix_nano=START_NS).attributes.extend(
        kvs({"gen_ai.prompt": "hello"})
    )
    link = built.links.add(trace_id=bytes.fromhex("ab" * 16), span_id=bytes.fromhex("cd" * 8))
    assert link
    properties = one_event(TRACES, traces(built))["properties"]
    assert properties["span.events"] == [
        {
            "name": "gen_ai.content.prompt",
            "timestamp": "2026-11-24T21:00:00.123Z",
            "attributes": {"gen_ai.prompt": "hello"},
        }
    ]
    assert properties["span.links"] == [{"trace_id": "ab" * 16, "span_id": "cd" * 8}]


def test_attribute_values_of_every_kind_become_json() -> None:
    properties = one_event(
        TRACES,
        traces(
            span(
                attributes={
                    "list": [1, "two", 3.5],
                    "map": {"a": {"b": True}},
                    "raw": b"\x00\xff",
                }
            )
        ),
    )["properties"]
    assert properties["list"] == [1, "two", 3.5]
    assert properties["map"] == {"a": {"b": True}}
    assert properties["raw"] == "AP8="  # base64, as OpenTelemetry writes bytes outside OTLP


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (span(name=""), "span has no name"),
        (span(trace_id=TRACE[:8]), "no valid trace_id"),
        (span(trace_id=b""), "no valid trace_id"),
        (span(trace_id=bytes(16)), "no valid trace_id"),
        (span(span_id=bytes(8)), "no valid span_id"),
        (span(span_id=SPAN + b"\x01"), "no valid span_id"),
        (span(parent_span_id=b"\x01\x02"), "invalid parent_span_id"),
        (span(start_time_unix_nano=0), "no start_time_unix_nano"),
        (span(end_time_unix_nano=START_NS - 1), "ends before it starts"),
    ],
)
def test_a_bad_span_is_refused_with_its_reason_and_its_neighbours_kept(
    bad: Span, reason: str
) -> None:
    good_before = span(span_id=bytes.fromhex("0000000000000001"))
    good_after = span(span_id=bytes.fromhex("0000000000000002"))
    decoded = decoded_from(TRACES, traces(good_before, bad, good_after))
    assert [d["span_id"] for d in documents(decoded)] == ["0000000000000001", "0000000000000002"]
    assert len(decoded.refused) == 1 and reason in decoded.refused[0]
    assert decoded.items == 3


# --- identity ---


def test_the_same_span_sent_again_has_the_same_uuid_and_another_span_another() -> None:
    first = one_event(TRACES, traces(span()))
    again = one_event(TRACES, traces(span(attributes={"late": 1})))
    other = one_event(TRACES, traces(span(span_id=bytes.fromhex("0102030405060708"))))
    assert first["uuid"] == again["uuid"]
    assert first["uuid"] != other["uuid"]


def test_derived_uuids_are_valid_time_ordered_version_8_uuids() -> None:
    value = uuid.UUID(one_event(TRACES, traces(span()))["uuid"])
    assert (value.version, value.variant) == (8, uuid.RFC_4122)
    assert int(value.hex[:12], 16) == START_MS  # time first, so the unique index appends


# --- logs ---


def test_a_log_record_takes_its_event_name_severity_body_and_trace_context() -> None:
    event = one_event(
        LOGS,
        logs(
            record(
                body="user asked for a refund",
                attributes={"session.id": "s1"},
                event_name="gen_ai.user.message",
                severity_number=9,
                severity_text="INFO",
                trace_id=TRACE,
                span_id=SPAN,
            )
        ),
    )
    assert event["event"] == "gen_ai.user.message"
    assert event["timestamp"] == "2026-11-24T21:00:00.123Z"
    assert (event["trace_id"], event["span_id"]) == (TRACE.hex(), SPAN.hex())
    assert event["properties"] == {
        "session.id": "s1",
        "log.severity_text": "INFO",
        "log.severity_number": 9,
        "log.body": "user asked for a refund",
    }


def test_a_log_record_is_named_by_its_event_name_attribute_else_log() -> None:
    by_attribute = one_event(LOGS, logs(record(attributes={"event.name": "tool_result"})))
    assert by_attribute["event"] == "tool_result"
    plain = one_event(LOGS, logs(record(body="plain line")))
    assert plain["event"] == "log"
    assert "trace_id" not in plain and "span_id" not in plain


def test_a_structured_body_is_kept_as_json() -> None:
    event = one_event(LOGS, logs(record(body={"content": "hi", "role": "user"})))
    assert event["properties"]["log.body"] == {"content": "hi", "role": "user"}


def test_a_record_without_time_uses_when_it_was_observed_else_the_receipt_time() -> None:
    observed = one_event(LOGS, logs(record(time_unix_nano=0, observed_time_unix_nano=START_NS)))
    assert observed["timestamp"] == "2026-11-24T21:00:00.123Z"
    neither = one_event(LOGS, logs(record(time_unix_nano=0)))
    assert "timestamp" not in neither  # the daemon stamps its receipt time


def claude_code_record(name: str, **attributes: object) -> object:
    """A log record as Claude Code emits its events: the full name as the body, the short
    one in `event.name`, and every attribute as text, numbers too."""
    return record(
        body=f"claude_code.{name}",
        attributes={
            "event.name": name,
            "event.timestamp": "2026-11-24T21:00:00.123Z",
            "event.sequence": 7,
            "session.id": "9d2c",
            **{key: str(value) for key, value in attributes.items()},
        },
    )


def test_a_coding_agents_api_request_event_arrives_with_its_numbers() -> None:
    event = one_event(
        LOGS,
        logs(
            claude_code_record(
                "api_request",
                model="claude-sonnet-4-5",
                input_tokens=1520,
                output_tokens=312,
                cache_read_tokens=9000,
                cache_creation_tokens=0,
                cost_usd=0.0123,
                duration_ms=2314,
                speed="normal",
            ),
            resource={"service.name": "claude-code", "service.version": "2.0.0"},
        ),
    )
    assert (event["event"], event["agent"]) == ("claude_code.api_request", "claude-code")
    properties = event["properties"]
    assert "log.body" not in properties  # the body was the event's name
    assert properties["model"] == "claude-sonnet-4-5"
    assert (properties["input_tokens"], properties["output_tokens"]) == (1520, 312)
    assert (properties["cache_read_tokens"], properties["cache_creation_tokens"]) == (9000, 0)
    assert (properties["cost_usd"], properties["duration_ms"]) == (0.0123, 2314)
    assert (properties["speed"], properties["event.sequence"]) == ("normal", 7)


def test_only_amounts_written_as_plain_numbers_become_numbers() -> None:
    properties = one_event(
        LOGS,
        logs(
            claude_code_record(
                "tool_result",
                tool_name="Bash",
                success="true",
                duration_ms="12.5",
                status_code="500",
                output_tokens="12k",
                input_tokens="1e3",
                cost_usd="",
            )
        ),
    )["properties"]
    assert properties["duration_ms"] == 12.5
    # Not amounts, or not plain decimal numbers: kept as sent.
    assert (properties["success"], properties["status_code"]) == ("true", "500")
    assert (properties["output_tokens"], properties["input_tokens"]) == ("12k", "1e3")
    assert properties["cost_usd"] == ""


def test_a_body_that_is_not_the_events_full_name_stays_a_body() -> None:
    event = one_event(
        LOGS,
        logs(record(body="API response from gemini-2.5-pro.", attributes={"event.name": "api"})),
    )
    assert (event["event"], event["properties"]["log.body"]) == (
        "api",
        "API response from gemini-2.5-pro.",
    )
    named = one_event(
        LOGS,
        logs(
            record(
                body="claude_code.api_request",
                event_name="gen_ai.client.inference",
                attributes={"event.name": "api_request"},
            )
        ),
    )
    # The record's own event_name wins; the body is then just a body.
    assert named["event"] == "gen_ai.client.inference"
    assert named["properties"]["log.body"] == "claude_code.api_request"


def test_identical_log_records_share_a_uuid_and_any_difference_separates_them() -> None:
    uuid_of = lambda request: one_event(LOGS, request)["uuid"]  # noqa: E731
    base = uuid_of(logs(record(body="line")))
    assert uuid_of(logs(record(body="line"))) == base
    assert uuid_of(logs(record(body="line 2"))) != base
    assert uuid_of(logs(record(body="line", time_unix_nano=START_NS + 1))) != base
    assert uuid_of(logs(record(body="line"), resource={"service.name": "other"})) != base


def test_a_body_that_only_ends_with_the_event_name_stays_content() -> None:
    """Only `<dotted name>.<event.name>` names the event: a sentence that happens to end
    so is what the user typed, and is masked as a body, not made the event's name."""
    prompt = "Alice Smith, 12 Baker St: please write my will. Format: doc.user_prompt"
    for body in (prompt, "multi\nline body.api_request", "claude code.api_request"):
        named = body.rsplit(".", 1)[1]
        decoded = decode(
            LOGS,
            logs(record(body=body, attributes={"event.name": named})).SerializeToString(),
            PROTOBUF,
            mask=ContentMask(),
        )
        assert decoded.refused == []
        (event,) = documents(decoded)
        assert event["event"] == named
        assert event["properties"]["log.body"] == f"[content: {len(body)} chars]"


def test_a_log_record_with_no_time_is_a_new_event_at_each_receipt() -> None:
    """Nothing but its receipt tells two such records apart: the same one sent an hour
    later must not be dropped as a duplicate of the first."""
    body = logs(record(body="heartbeat", time_unix_nano=0)).SerializeToString()
    uuid_at = lambda ms: documents(decode(LOGS, body, PROTOBUF, received_ms=ms))[0]["uuid"]  # noqa: E731
    assert uuid_at(START_MS) == uuid_at(START_MS)
    assert uuid_at(START_MS) != uuid_at(START_MS + 3_600_000)
    assert uuid.UUID(uuid_at(START_MS)).int >> 80 == START_MS


@pytest.mark.parametrize(
    ("context", "kept"),
    [
        ({"trace_id": b"\x01"}, {}),
        ({"trace_id": bytes(16), "span_id": bytes(8)}, {}),
        ({"span_id": SPAN}, {}),
        ({"trace_id": TRACE, "span_id": bytes(8)}, {"trace_id": TRACE.hex()}),
        ({"trace_id": TRACE, "span_id": SPAN}, {"trace_id": TRACE.hex(), "span_id": SPAN.hex()}),
    ],
)
def test_a_log_records_trace_context_is_kept_when_valid_and_left_out_when_not(
    context: dict[str, bytes], kept: dict[str, str]
) -> None:
    """A log record's trace context is optional, and an invalid id means it has none: the
    record is kept either way."""
    event = one_event(LOGS, logs(record(body="kept", **context)))  # type: ignore[arg-type]
    assert event["properties"]["log.body"] == "kept"
    assert {key: event[key] for key in ("trace_id", "span_id") if key in event} == kept


def test_a_request_with_thousands_of_resources_keeps_each_once() -> None:
    request = logs(record(body="a"), resource={"service.name": "one"})
    for number in range(3000):
        more = logs(record(body="b"), resource={"service.name": "one", "n": number % 1000})
        request.resource_logs.extend(more.resource_logs)
    decoded = decoded_from(LOGS, request)
    assert len(decoded.events) == 3001
    assert len(decoded.resources) == 1001


# --- metrics ---


def number_point(value: float | int, **fields: object) -> NumberDataPoint:
    point = NumberDataPoint(**{"time_unix_nano": START_NS, **fields})  # type: ignore[arg-type]
    if isinstance(value, int):
        point.as_int = value
    else:
        point.as_double = value
    return point


def test_cumulative_and_delta_counters_arrive_with_their_temporality() -> None:
    cumulative = Metric(name="claude_code.token.usage", unit="tokens")
    cumulative.sum.aggregation_temporality = CUMULATIVE
    cumulative.sum.is_monotonic = True
    point = number_point(1520, start_time_unix_nano=START_NS - 60_000_000_000)
    point.attributes.extend(kvs({"type": "input", "model": "claude-sonnet-4-5"}))
    cumulative.sum.data_points.append(point)
    delta = Metric(name="requests")
    delta.sum.aggregation_temporality = DELTA
    delta.sum.is_monotonic = True
    delta.sum.data_points.append(number_point(3))
    decoded = decoded_from(METRICS, metrics(cumulative, delta))
    first, second = documents(decoded)
    assert first["event"] == "claude_code.token.usage"
    assert first["timestamp"] == "2026-11-24T21:00:00.123Z"
    assert first["properties"] == {
        "type": "input",
        "model": "claude-sonnet-4-5",
        "metric.type": "sum",
        "metric.unit": "tokens",
        "metric.temporality": "cumulative",
        "metric.monotonic": True,
        "metric.start_time": "2026-11-24T20:59:00.123Z",
        "metric.value": 1520,
    }
    assert (second["properties"]["metric.temporality"], second["properties"]["metric.value"]) == (
        "delta",
        3,
    )


def test_a_gauge_point_keeps_its_double_value() -> None:
    gauge = Metric(name="queue.depth")
    gauge.gauge.data_points.append(number_point(2.5))
    properties = one_event(METRICS, metrics(gauge))["properties"]
    assert properties == {"metric.type": "gauge", "metric.value": 2.5}


def test_a_histogram_keeps_its_buckets_and_bounds() -> None:
    histogram = Metric(name="gen_ai.client.operation.duration", unit="s")
    histogram.histogram.aggregation_temporality = DELTA
    histogram.histogram.data_points.append(
        HistogramDataPoint(
            time_unix_nano=START_NS,
            count=6,
            sum=4.2,
            min=0.1,
            max=2.0,
            bucket_counts=[1, 3, 2],
            explicit_bounds=[0.5, 1.0],
        )
    )
    properties = one_event(METRICS, metrics(histogram))["properties"]
    assert properties == {
        "metric.type": "histogram",
        "metric.unit": "s",
        "metric.temporality": "delta",
        "metric.count": 6,
        "metric.sum": 4.2,
        "metric.min": 0.1,
        "metric.max": 2.0,
        "metric.bucket_counts": [1, 3, 2],
        "metric.explicit_bounds": [0.5, 1.0],
    }


def test_an_exponential_histogram_and_a_summary_keep_their_shapes() -> None:
    exponential = Metric(name="latency")
    exponential.exponential_histogram.aggregation_temporality = CUMULATIVE
    point = ExponentialHistogramDataPoint(
        time_unix_nano=START_NS, count=4, sum=10.0, scale=2, zero_count=1, zero_threshold=0.0
    )
    point.positive.offset = 3
    point.positive.bucket_counts.extend([1, 2])
    exponential.exponential_histogram.data_points.append(point)
    summary = Metric(name="gc.pause")
    summary_point = SummaryDataPoint(time_unix_nano=START_NS, count=10, sum=55.0)
    summary_point.quantile_values.add(quantile=0.5, value=5.0)
    summary_point.quantile_values.add(quantile=0.99, value=9.5)
    summary.summary.data_points.append(summary_point)
    first, second = documents(decoded_from(METRICS, metrics(exponential, summary)))
    assert first["properties"] == {
        "metric.type": "exponential_histogram",
        "metric.temporality": "cumulative",
        "metric.count": 4,
        "metric.sum": 10.0,
        "metric.scale": 2,
        "metric.zero_count": 1,
        "metric.zero_threshold": 0.0,
        "metric.positive.offset": 3,
        "metric.positive.bucket_counts": [1, 2],
    }
    assert second["properties"] == {
        "metric.type": "summary",
        "metric.count": 10,
        "metric.sum": 55.0,
        "metric.quantiles": [{"quantile": 0.5, "value": 5.0}, {"quantile": 0.99, "value": 9.5}],
    }


def test_bad_points_are_refused_one_reason_each_and_good_ones_kept() -> None:
    nameless = Metric(name="")
    nameless.gauge.data_points.extend([number_point(1), number_point(2)])
    no_data = Metric(name="empty")
    timeless = Metric(name="mixed")
    timeless.gauge.data_points.extend([number_point(1, time_unix_nano=0), number_point(5)])
    decoded = decoded_from(METRICS, metrics(nameless, no_data, timeless))
    assert [d["properties"]["metric.value"] for d in documents(decoded)] == [5]
    assert sorted(decoded.refused) == [
        "data point has no time_unix_nano",
        "metric has no data this daemon reads (gauge, sum, histogram, exponential histogram,"
        " summary)",
        "metric has no name",
        "metric has no name",
    ]


def test_a_points_identity_ignores_its_exemplars_and_follows_its_value() -> None:
    def uuid_with(value: int, exemplar: bool) -> str:
        gauge = Metric(name="g")
        point = number_point(value)
        if exemplar:
            point.exemplars.append(Exemplar(trace_id=TRACE, span_id=SPAN, as_int=value))
        gauge.gauge.data_points.append(point)
        return one_event(METRICS, metrics(gauge))["uuid"]

    assert uuid_with(1, exemplar=False) == uuid_with(1, exemplar=True)
    assert uuid_with(1, exemplar=False) != uuid_with(2, exemplar=False)


# --- resources ---


def test_service_name_is_the_agent_and_the_resource_is_kept_once_as_its_own_event() -> None:
    resource = {"service.name": "planner", "service.version": "1.2", "host.arch": "arm64"}
    request = traces(span(), span(span_id=bytes.fromhex("0102030405060708")), resource=resource)
    decoded = decoded_from(TRACES, request)
    assert {d["agent"] for d in documents(decoded)} == {"planner"}
    assert all("service.version" not in d["properties"] for d in documents(decoded))
    (info,) = decoded.resources
    event = resource_event(info)
    validate(event, Limits())
    assert (event["event"], event["agent"], event["properties"]) == (
        RESOURCE_EVENT,
        "planner",
        resource,
    )
    assert resource_event(decoded_from(TRACES, request).resources[0])["uuid"] == event["uuid"]


def test_a_service_name_too_long_or_with_control_characters_still_names_the_agent() -> None:
    event = one_event(TRACES, traces(span(), resource={"service.name": "a\nb" + "c" * 200}))
    assert event["agent"] == "ab" + "c" * 98


def test_without_a_service_name_the_events_have_no_agent_of_their_own() -> None:
    event = one_event(TRACES, traces(span(), resource={"host.arch": "amd64"}))
    assert "agent" not in event  # the receiver's source (X-Agent-Name or unknown) names it


def test_a_spans_uuid_is_the_identity_uuid_of_its_ids() -> None:
    assert span_uuid(START_MS, TRACE, SPAN) == identity_uuid(START_MS, b"span", TRACE, SPAN)
    assert one_event(TRACES, traces(span()))["uuid"] == span_uuid(START_MS, TRACE, SPAN)


def test_derived_uuids_stay_what_earlier_versions_made_so_a_retry_across_an_upgrade_dedupes() -> (
    None
):
    assert span_uuid(START_MS, TRACE, SPAN) == "01a20f5b-bcfb-8eed-860a-a1bdb04aeece"
    assert identity_uuid(START_MS, b"log", b"abc") == "01a20f5b-bcfb-8681-b09c-47b4be2f75ec"
    # Times outside 48 bits are clamped, never wrapped into another span's uuid.
    assert span_uuid(-1, TRACE, SPAN) == "00000000-0000-8eed-860a-a1bdb04aeece"
    assert span_uuid(1 << 60, TRACE, SPAN) == "ffffffff-ffff-8eed-860a-a1bdb04aeece"


def test_a_spans_duration_is_the_microsecond_rounded_float_at_every_length() -> None:
    # The mapper writes the common case out; at ties, near 10**15 and past it, it must
    # still give what `round` gives.
    for nanos in (0, 1, 499, 500, 501, 1_500, 812_345_678, 10**15 - 500, 10**15, 2**63):
        event = one_event(TRACES, traces(span(end_time_unix_nano=START_NS + nanos)))
        assert event["properties"]["duration_ms"] == round(nanos / 1_000_000, 3), nanos


def test_a_duration_is_the_microsecond_rounded_float_at_every_length() -> None:
    durations = [0, 1, 499, 500, 501, 1_500, 2_500, 812_345_678, 10**15 - 500, 10**15, 2**64 - 1]
    for scale in (10**3, 10**6, 10**9, 10**12, 10**14):
        durations += [scale * k + rest for k in (1, 7, 123) for rest in range(0, 1000, 7)]
        durations += [scale * k + rest for k in (3, 99) for rest in (499, 500, 501)]
    for nanos in durations:
        assert duration_ms(nanos) == round(nanos / 1_000_000, 3), nanos


def test_the_per_request_cap_counts_data_points_of_every_metric_kind() -> None:
    gauge = Metric(name="queue.depth")
    gauge.gauge.data_points.extend(
        NumberDataPoint(as_int=i, time_unix_nano=1) for i in range(9_999)
    )
    counter = Metric(name="tokens")
    counter.sum.data_points.extend(NumberDataPoint(as_int=i, time_unix_nano=1) for i in range(3))
    decoded = decode(METRICS, metrics(gauge, counter).SerializeToString(), PROTOBUF)
    assert len(decoded.events) == 10_000
    assert (
        decoded.refused == ["more than 10,000 data points in one request; send smaller batches"] * 2
    )
