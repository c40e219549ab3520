"""OTLP requests built with the official protobuf classes, for the OTLP tests."""

from __future__ import annotations

from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from opentelemetry.proto.metrics.v1.metrics_pb2 import Metric
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from agent_telemetry._wire import format_timestamp
from agent_telemetryd.otlp.decoded import Decoded

TRACE = bytes.fromhex("5b8efff798038103d269b633813fc60c")
SPAN = bytes.fromhex("eee19b7ec3c1b174")
PARENT = bytes.fromhex("eee19b7ec3c1b173")
START_NS = 1_795_554_000_123_456_789  # 2026-11-24T21:00:00.123456789Z
START_MS = 1_795_554_000_123


def any_value(value: Any) -> AnyValue:
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, str):
        return AnyValue(string_value=value)
    if isinstance(value, bytes):
        return AnyValue(bytes_value=value)
    if isinstance(value, list):
        found = AnyValue()
        found.array_value.values.extend(any_value(item) for item in value)
        return found
    if isinstance(value, dict):
        found = AnyValue()
        found.kvlist_value.values.extend(kvs(value))
        return found
    raise TypeError(type(value))


def kvs(values: dict[str, Any]) -> list[KeyValue]:
    return [KeyValue(key=key, value=any_value(value)) for key, value in values.items()]


def traces(
    *spans: Span, resource: dict[str, Any] | None = None, scope: str = "tests"
) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.resource.attributes.extend(kvs(resource or {"service.name": "planner"}))
    scope_spans = resource_spans.scope_spans.add()
    scope_spans.scope.name = scope
    scope_spans.spans.extend(spans)
    return request


def span(name: str = "chat gpt-4o", **fields: Any) -> Span:
    attributes = fields.pop("attributes", {})
    defaults: dict[str, Any] = {
        "trace_id": TRACE,
        "span_id": SPAN,
        "start_time_unix_nano": START_NS,
        "end_time_unix_nano": START_NS + 812_345_000,
    }
    built = Span(name=name, **{**defaults, **fields})
    built.attributes.extend(kvs(attributes))
    return built


def logs(*records: LogRecord, resource: dict[str, Any] | None = None) -> ExportLogsServiceRequest:
    request = ExportLogsServiceRequest()
    resource_logs = request.resource_logs.add()
    resource_logs.resource.attributes.extend(kvs(resource or {"service.name": "planner"}))
    resource_logs.scope_logs.add().log_records.extend(records)
    return request


def record(body: Any = None, attributes: dict[str, Any] | None = None, **fields: Any) -> LogRecord:
    built = LogRecord(**{"time_unix_nano": START_NS, **fields})
    if body is not None:
        built.body.CopyFrom(any_value(body))
    built.attributes.extend(kvs(attributes or {}))
    return built


def metrics(*items: Metric, resource: dict[str, Any] | None = None) -> ExportMetricsServiceRequest:
    request = ExportMetricsServiceRequest()
    resource_metrics = request.resource_metrics.add()
    resource_metrics.resource.attributes.extend(kvs(resource or {"service.name": "planner"}))
    resource_metrics.scope_metrics.add().metrics.extend(items)
    return request


def documents(decoded: Decoded) -> list[dict[str, Any]]:
    """The decoded events in the wire's form, as an agent would have sent them."""
    found = []
    for event in decoded.events:
        document: dict[str, Any] = {
            "event": event.event,
            "properties": event.properties,
            "uuid": event.uuid,
        }
        if event.ts_ms is not None:
            document["timestamp"] = format_timestamp(event.ts_ms)
        fields = ("agent", "trace_id", "span_id", "parent_span_id")
        document.update({f: getattr(event, f) for f in fields if getattr(event, f) is not None})
        found.append(document)
    return found
