"""The three OTLP signals side by side: request and answer classes, decoders, mappings."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from agent_telemetryd.otlp import json_input
from agent_telemetryd.otlp.decoded import Decoded
from agent_telemetryd.otlp.logs import map_logs
from agent_telemetryd.otlp.metrics import map_metrics
from agent_telemetryd.otlp.traces import map_traces


@dataclass(frozen=True, slots=True)
class Signal:
    name: str  # as in the URL path: /v1/<name>
    items: str  # what one item is called, plural, for messages
    request: type[Message]
    response: type[Message]
    rejected_field: str  # the count in the answer's partial_success
    from_json: Callable[[Any], tuple[Any, list[str]]]
    to_events: Callable[[Any, Decoded], None]
    # The request's lists of items, in order: what the per-request cap counts and cuts.
    item_lists: Callable[[Any], Iterator[Any]]


def _spans(request: ExportTraceServiceRequest) -> Iterator[Any]:
    for resource_spans in request.resource_spans:
        for scope_spans in resource_spans.scope_spans:
            yield scope_spans.spans


def _log_records(request: ExportLogsServiceRequest) -> Iterator[Any]:
    for resource_logs in request.resource_logs:
        for scope_logs in resource_logs.scope_logs:
            yield scope_logs.log_records


def _data_points(request: ExportMetricsServiceRequest) -> Iterator[Any]:
    for resource_metrics in request.resource_metrics:
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                kind = metric.WhichOneof("data")
                if kind is not None:
                    yield getattr(metric, kind).data_points


TRACES = Signal(
    "traces",
    "spans",
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
    "rejected_spans",
    json_input.traces_from_json,
    map_traces,
    _spans,
)
LOGS = Signal(
    "logs",
    "log records",
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
    "rejected_log_records",
    json_input.logs_from_json,
    map_logs,
    _log_records,
)
METRICS = Signal(
    "metrics",
    "data points",
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
    "rejected_data_points",
    json_input.metrics_from_json,
    map_metrics,
    _data_points,
)
SIGNALS = {signal.name: signal for signal in (TRACES, LOGS, METRICS)}
