"""The three OTLP signals side by side: request and answer classes, decoders, mappings."""

from __future__ import annotations

from collections.abc import Callable
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


TRACES = Signal(
    "traces",
    "spans",
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
    "rejected_spans",
    json_input.traces_from_json,
    map_traces,
)
LOGS = Signal(
    "logs",
    "log records",
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
    "rejected_log_records",
    json_input.logs_from_json,
    map_logs,
)
METRICS = Signal(
    "metrics",
    "data points",
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
    "rejected_data_points",
    json_input.metrics_from_json,
    map_metrics,
)
SIGNALS = {signal.name: signal for signal in (TRACES, LOGS, METRICS)}
