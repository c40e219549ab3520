"""OTLP's JSON encoding → the same protobuf request the binary encoding gives.

The OTLP spec's JSON is protobuf's JSON mapping with changes that `json_format` does not
know: trace and span ids are hex (case-insensitive), not base64. So the ids are taken out
of each item before `json_format` parses it and put back as bytes after. Everything else
(int64 as strings or numbers, enums as numbers or names, lowerCamelCase or original field
names, unknown fields ignored) is `json_format`'s own.

Each item (span, log record, data point) is parsed on its own: a bad one is refused with a
reason and its neighbours are kept. A bad envelope (resource, scope, the arrays that hold
items) is a bad request: `JsonShapeError`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

_HEX = re.compile(r"(?:[0-9a-fA-F]{2})*")
# Stands for an id that is not hex: one byte, a size no id has, so the mapping refuses the
# item as having an invalid id (an empty id would read as "absent", which logs allow).
_NOT_HEX = b"\x00"
_FIELD_IN_ERROR = re.compile(r"Failed to parse (\w+) field")
_POINT_KINDS = {
    "gauge": "gauge",
    "sum": "sum",
    "histogram": "histogram",
    "exponentialHistogram": "exponential_histogram",
    "exponential_histogram": "exponential_histogram",
    "summary": "summary",
}


class JsonShapeError(ValueError):
    """The request's envelope is not OTLP JSON; the message says where (schema names only)."""


def traces_from_json(document: Any) -> tuple[ExportTraceServiceRequest, list[str]]:
    request = ExportTraceServiceRequest()

    def parse_spans(items: list[Any], scope: Any, refused: list[str]) -> None:
        for item in items:
            _parse_item(item, scope.spans, "span", _span_ids, refused)

    return request, _walk(document, request, ("resourceSpans", "scopeSpans", "spans"), parse_spans)


def logs_from_json(document: Any) -> tuple[ExportLogsServiceRequest, list[str]]:
    request = ExportLogsServiceRequest()

    def parse_records(items: list[Any], scope: Any, refused: list[str]) -> None:
        for item in items:
            _parse_item(item, scope.log_records, "log record", _record_ids, refused)

    keys = ("resourceLogs", "scopeLogs", "logRecords")
    return request, _walk(document, request, keys, parse_records)


def metrics_from_json(document: Any) -> tuple[ExportMetricsServiceRequest, list[str]]:
    request = ExportMetricsServiceRequest()

    def parse_metrics(items: list[Any], scope: Any, refused: list[str]) -> None:
        for item in items:
            _parse_metric(item, scope.metrics, refused)

    keys = ("resourceMetrics", "scopeMetrics", "metrics")
    return request, _walk(document, request, keys, parse_metrics)


def _walk(
    document: Any,
    request: Message,
    keys: tuple[str, str, str],
    parse_items: Callable[[list[Any], Any, list[str]], None],
) -> list[str]:
    """Parse the envelopes (resource, then scope) into `request` and hand each scope's items
    to `parse_items`; returns one reason for each refused item."""
    resources_key, scopes_key, items_key = keys
    if not isinstance(document, dict):
        raise JsonShapeError("request body must be a JSON object")
    refused: list[str] = []
    resources = getattr(request, _snake(resources_key))
    for resource_json in _array(document, resources_key):
        if not isinstance(resource_json, dict):
            raise JsonShapeError(f"each of {resources_key} must be an object")
        holder = _parse_part(resources, _without(resource_json, scopes_key), resources_key)
        scopes = getattr(holder, _snake(scopes_key))
        for scope_json in _array(resource_json, scopes_key):
            if not isinstance(scope_json, dict):
                raise JsonShapeError(f"each of {scopes_key} must be an object")
            scope = _parse_part(scopes, _without(scope_json, items_key), scopes_key)
            parse_items(_array(scope_json, items_key), scope, refused)
    return refused


def _parse_part(container: Any, part: dict[str, Any], where: str) -> Any:
    message = container.add()
    try:
        json_format.ParseDict(part, message, ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError, TypeError, RecursionError) as error:
        raise JsonShapeError(f"{where} is not valid OTLP JSON{_field_of(error)}") from None
    return message


def _parse_item(
    item: Any,
    container: Any,
    what: str,
    take_ids: Callable[[dict[str, Any]], tuple[dict[str, Any], Callable[[Message], None]]],
    refused: list[str],
) -> Message | None:
    if not isinstance(item, dict):
        refused.append(f"{what} is not a JSON object")
        return None
    stripped, put_ids_back = take_ids(item)
    message = container.add()
    try:
        json_format.ParseDict(stripped, message, ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError, TypeError, RecursionError) as error:
        del container[-1]
        refused.append(f"{what} is not valid OTLP JSON{_field_of(error)}")
        return None
    put_ids_back(message)
    return message


def _span_ids(item: dict[str, Any]) -> tuple[dict[str, Any], Callable[[Message], None]]:
    stripped, ids = _take(item, ("traceId", "spanId", "parentSpanId"))
    links = item.get("links")
    link_ids: list[dict[str, bytes]] = []
    if isinstance(links, list):
        stripped_links = []
        for link in links:
            if isinstance(link, dict):
                link, found = _take(link, ("traceId", "spanId"))
                link_ids.append(found)
            stripped_links.append(link)
        stripped["links"] = stripped_links

    def put_back(span: Message) -> None:
        _set(span, ids)
        for link, found in zip(span.links, link_ids, strict=False):  # type: ignore[attr-defined]
            _set(link, found)

    return stripped, put_back


def _record_ids(item: dict[str, Any]) -> tuple[dict[str, Any], Callable[[Message], None]]:
    stripped, ids = _take(item, ("traceId", "spanId"))
    return stripped, lambda record: _set(record, ids)


def _no_ids(item: dict[str, Any]) -> tuple[dict[str, Any], Callable[[Message], None]]:
    # Exemplars (the only ids in a data point) are not kept: dropped before parsing.
    return _without(item, "exemplars"), lambda point: None


def _parse_metric(item: Any, container: Any, refused: list[str]) -> None:
    if not isinstance(item, dict):
        refused.append("metric is not a JSON object")
        return
    kinds = [key for key in _POINT_KINDS if key in item]
    if not kinds:
        _parse_item(item, container, "metric", _no_ids, refused)  # the mapping says why
        return
    data = item[kinds[0]]
    points = _array(data, "dataPoints") if isinstance(data, dict) else []
    shell = {**item, kinds[0]: _without(data, "dataPoints") if isinstance(data, dict) else data}
    metric = _parse_item(shell, container, "metric", _no_ids, refused)
    if metric is None:
        refused.extend([refused[-1]] * (len(points) - 1))  # each point it held is refused
        return
    holder = getattr(metric, _POINT_KINDS[kinds[0]]).data_points
    for point in points:
        _parse_item(point, holder, "data point", _no_ids, refused)


def _take(
    item: dict[str, Any], camel_names: tuple[str, ...]
) -> tuple[dict[str, Any], dict[str, bytes]]:
    """A copy of `item` without its id fields, and those ids as bytes by protobuf name."""
    stripped = dict(item)
    ids: dict[str, bytes] = {}
    for camel in camel_names:
        snake = _snake(camel)
        for key in (camel, snake):
            if key in stripped:
                ids[snake] = _hex_bytes(stripped.pop(key))
    return stripped, ids


def _set(message: Message, ids: dict[str, bytes]) -> None:
    for name, value in ids.items():
        setattr(message, name, value)


def _hex_bytes(value: Any) -> bytes:
    if value is None or value == "":
        return b""
    if isinstance(value, str) and _HEX.fullmatch(value):
        return bytes.fromhex(value)
    return _NOT_HEX


def _array(node: dict[str, Any], camel: str) -> list[Any]:
    value = node.get(camel, node.get(_snake(camel)))
    if value is None:
        return []
    if not isinstance(value, list):
        raise JsonShapeError(f"{camel} must be an array")
    return value


def _without(node: dict[str, Any], camel: str) -> dict[str, Any]:
    snake = _snake(camel)
    return {key: value for key, value in node.items() if key not in (camel, snake)}


def _snake(camel: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", camel).lower()


def _field_of(error: Exception) -> str:
    """The schema field a json_format error names (never the value it quotes)."""
    match = _FIELD_IN_ERROR.search(str(error))
    return f" (field {match.group(1)})" if match else ""
