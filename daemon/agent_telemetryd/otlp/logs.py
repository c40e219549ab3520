"""Log records → events (one per record), named by the record's event name: `event_name`,
else its `event.name` attribute, else `log`. Attributes become properties; severity goes
to `log.severity_text` and `log.severity_number`, and the body to `log.body` (the names
OpenTelemetry's transformation language gives them), where the content rules find it.

Two shapes coding agents use are read for what they mean:
- Claude Code puts its event's full name in the body (`claude_code.api_request`) and the
  short one in `event.name` (`api_request`). A text body that is the `event.name` under a
  dotted name's prefix (`<prefix>.<event.name>`, the prefix made of identifiers) names
  the event and is not kept as a body: the event is named as the agent's documentation
  names it. Any other body is content, however it ends.

The trace context of a record is optional: an id that is absent or invalid (the wrong
size, all zeros) means the record belongs to no trace or span, as OTLP tells receivers
to read it, and the record is kept without it. A record with neither time nor observed
time takes the daemon's receipt time, in its uuid too: the same record sent again later
is a second occurrence, not a retry.
- Claude Code sends every attribute as text, numbers too. The amounts the dashboard and
  the upload backends add up (`duration_ms`, `cost_usd`, and token counts `*_tokens`)
  become numbers when their text is a plain decimal number; other text stays text.
"""

from __future__ import annotations

import re
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord

from agent_telemetryd.otlp.decoded import Decoded, scope_properties, wire_event
from agent_telemetryd.otlp.identity import identity_uuid
from agent_telemetryd.otlp.values import (
    SPAN_ID_BYTES,
    TRACE_ID_BYTES,
    any_value,
    attributes,
    hex_id,
    rfc3339,
    time_ms,
)

NUMERIC_NAMES = frozenset({"duration_ms", "cost_usd"})
NUMERIC_SUFFIX = "_tokens"
_DECIMAL = re.compile(r"-?(?:0|[1-9][0-9]{0,17})(?:\.[0-9]{1,17})?")
# The prefix of an agent's full event name: `claude_code`, `gemini_cli`, `a.b`.
_NAME_PREFIX = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}(?:\.[A-Za-z][A-Za-z0-9_-]{0,63}){0,3}")
DEFAULT_NAME = "log"
BODY = "log.body"
SEVERITY_TEXT = "log.severity_text"
SEVERITY_NUMBER = "log.severity_number"


def map_logs(request: ExportLogsServiceRequest, out: Decoded) -> None:
    for resource_logs in request.resource_logs:
        resource = out.add_resource(resource_logs.resource)
        for scope_logs in resource_logs.scope_logs:
            scope = scope_properties(scope_logs.scope)
            scope_identity = scope_logs.scope.SerializeToString(deterministic=True)
            for record in scope_logs.log_records:
                out.take(
                    log_event,
                    record,
                    resource.agent,
                    scope,
                    resource.identity,
                    scope_identity,
                    out.received_ms,
                )


def log_event(
    record: LogRecord,
    agent: str | None,
    scope: dict[str, Any],
    resource_identity: bytes,
    scope_identity: bytes,
    received_ms: int,
) -> dict[str, Any]:
    trace_id = _optional_id(record.trace_id, TRACE_ID_BYTES)
    span_id = _optional_id(record.span_id, SPAN_ID_BYTES) if trace_id is not None else None
    # When it happened, else when the SDK saw it; else the daemon's receipt time.
    at = time_ms(record.time_unix_nano) or time_ms(record.observed_time_unix_nano)

    properties = {**scope, **attributes(record.attributes)}
    _numbers_from_text(properties)
    body = any_value(record.body) if record.HasField("body") else None
    name = record.event_name
    if not name:
        named = properties.get("event.name")
        if isinstance(named, str) and named:
            name = named
            if (
                isinstance(body, str)
                and body.endswith("." + named)
                and _NAME_PREFIX.fullmatch(body[: -len(named) - 1])
            ):
                name, body = body, None  # `claude_code.api_request` for `api_request`
        else:
            name = DEFAULT_NAME
    if record.severity_text:
        properties[SEVERITY_TEXT] = record.severity_text
    if record.severity_number:
        properties[SEVERITY_NUMBER] = int(record.severity_number)
    if body is not None:
        properties[BODY] = body

    # Everything the record says is its identity, the resource and scope it came under
    # too: two services may well log the same line in the same nanosecond.
    identity = record.SerializeToString(deterministic=True)
    document = wire_event(
        name,
        properties,
        identity_uuid(
            received_ms if at is None else at,
            b"log",
            resource_identity,
            scope_identity,
            identity,
        ),
        agent,
        rfc3339(at) if at is not None else None,
    )
    if trace_id is not None:
        document["trace_id"] = trace_id
    if span_id is not None:
        document["span_id"] = span_id
    return document


def _optional_id(raw: bytes, size: int) -> str | None:
    """A record's trace or span id in hex; None when absent or invalid (no trace, then)."""
    try:
        return hex_id(raw, size)
    except ValueError:
        return None


def _numbers_from_text(properties: dict[str, Any]) -> None:
    """Amounts sent as text (`"812"`) as the numbers they are; see the module docstring."""
    for key, value in properties.items():
        if (
            type(value) is str
            and (key in NUMERIC_NAMES or key.endswith(NUMERIC_SUFFIX))
            and _DECIMAL.fullmatch(value)
        ):
            properties[key] = float(value) if "." in value else int(value)
