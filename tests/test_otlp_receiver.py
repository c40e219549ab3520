"""End to end: OpenTelemetry's own Python exporters, unchanged, pointed at the real daemon.

What they send must land as events with the mapped fields, once however often it is sent;
what the daemon cannot take must be answered as the OTLP spec says, and every item is
accounted for in `status`: received = stored + rejected + dropped, after each request.
"""

from __future__ import annotations

import gzip
import json
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from google.rpc.status_pb2 import Status
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import (
    InMemoryLogRecordExporter,
    LogRecordExportResult,
    SimpleLogRecordProcessor,
)
from opentelemetry.sdk.metrics import Counter, Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status as SpanStatus
from opentelemetry.trace import StatusCode

from tests.daemon_process import DaemonProcess
from tests.otlp_messages import logs, record, span, traces
from tests.test_daemon_ingest import post_events

PROTOBUF = "application/x-protobuf"
CANARY_PROMPT = "canary-prompt-7f3a9c"
CANARY_BODY = "canary-log-body-51e2d0"


def post(
    url: str, body: bytes, content_type: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": content_type, **(headers or {})}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def counters(daemon: DaemonProcess) -> dict[str, Any]:
    return dict(daemon.status()["counters"])


def assert_balanced(daemon: DaemonProcess) -> dict[str, Any]:
    found = counters(daemon)
    assert found["received"] == found["stored"] + found["rejected"] + found["dropped"], found
    return found


def otlp_rows(daemon: DaemonProcess) -> list[dict[str, Any]]:
    return [row for row in daemon.export() if row["transport"] == "otlp"]


@dataclass(frozen=True)
class Exporters:
    """OpenTelemetry's own exporters of one transport, pointed at one daemon."""

    spans: Callable[[], Any]
    logs: Callable[[], Any]
    metrics: Callable[..., Any]  # takes preferred_temporality


def http_exporters(url: str) -> Exporters:
    return Exporters(
        spans=lambda: OTLPSpanExporter(endpoint=f"{url}/v1/traces"),
        logs=lambda: OTLPLogExporter(endpoint=f"{url}/v1/logs", compression=Compression.Gzip),
        metrics=lambda **kw: OTLPMetricExporter(endpoint=f"{url}/v1/metrics", **kw),
    )


@contextmanager
def tracer_provider(exporters: Exporters, resource: Resource) -> Iterator[TracerProvider]:
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(SimpleSpanProcessor(exporters.spans()))
    try:
        yield provider
    finally:
        provider.shutdown()


@contextmanager
def logger_provider(exporters: Exporters, resource: Resource) -> Iterator[LoggerProvider]:
    provider = LoggerProvider(resource=resource, shutdown_on_exit=False)
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporters.logs()))
    try:
        yield provider
    finally:
        provider.shutdown()


def run_an_agent(exporters: Exporters) -> dict[str, str]:
    """An agent run as an OTel-instrumented program reports it: three spans (one failed),
    two log events, and three metric points. Returns the span ids by name."""
    resource = Resource.create({"service.name": "sdk-agent", "service.version": "0.9"})
    ids: dict[str, str] = {}
    with (
        tracer_provider(exporters, resource) as tracing,
        logger_provider(exporters, resource) as logging,
    ):
        tracer = tracing.get_tracer("agent")
        logger = logging.get_logger("agent")
        with tracer.start_as_current_span("invoke_agent planner") as root:
            ids["root"] = format(root.get_span_context().span_id, "016x")
            with tracer.start_as_current_span("chat gpt-4o") as chat:
                chat.set_attribute("gen_ai.request.model", "gpt-4o")
                chat.set_attribute("gen_ai.usage.input_tokens", 1200)
                chat.set_attribute("gen_ai.usage.output_tokens", 85)
                ids["chat"] = format(chat.get_span_context().span_id, "016x")
                logger.emit(
                    event_name="gen_ai.client.inference",
                    body="the model was asked",
                    severity_text="INFO",
                    attributes={"gen_ai.request.model": "gpt-4o"},
                )
            try:
                with tracer.start_as_current_span("execute_tool search"):
                    raise TimeoutError("search took too long")
            except TimeoutError:
                pass
        logger.emit(body="run finished", attributes={"event.name": "agent.run.finished"})
    cumulative = exporters.metrics()
    delta = exporters.metrics(preferred_temporality={Counter: AggregationTemporality.DELTA})
    readers = [
        PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
        for exporter in (cumulative, delta)
    ]
    for reader, name in zip(readers, ("tokens.cumulative", "tokens.delta"), strict=True):
        meters = MeterProvider([reader], resource=resource, shutdown_on_exit=False)
        try:
            meter = meters.get_meter("agent")
            counter = meter.create_counter(name, unit="{token}")
            counter.add(1200, {"gen_ai.request.model": "gpt-4o"})
            counter.add(85, {"gen_ai.request.model": "gpt-4o"})
            if name == "tokens.cumulative":
                histogram: Histogram = meter.create_histogram("op.duration", unit="s")
                histogram.record(0.8)
        finally:
            meters.shutdown()  # collects and exports, once
    return ids


def test_the_python_sdk_exporters_land_spans_logs_and_metrics_as_mapped_events(
    daemon: DaemonProcess,
) -> None:
    ids = run_an_agent(http_exporters(daemon.http_url()))
    assert_the_agent_run_landed(daemon, ids)


def assert_the_agent_run_landed(daemon: DaemonProcess, ids: dict[str, str]) -> None:
    """What `run_an_agent` reported is in `export`, exactly, with the mapped fields."""
    rows = otlp_rows(daemon)
    by_name = {row["event"]: row for row in rows}
    assert sorted(by_name) == sorted(
        [
            "invoke_agent planner",
            "chat gpt-4o",
            "execute_tool search",
            "gen_ai.client.inference",
            "agent.run.finished",
            "tokens.cumulative",
            "tokens.delta",
            "op.duration",
            "otel.resource",
        ]
    )
    assert len(rows) == 9
    assert {row["agent"] for row in rows} == {"sdk-agent"}

    root, chat, tool = (
        by_name[n] for n in ("invoke_agent planner", "chat gpt-4o", "execute_tool search")
    )
    assert (root["span_id"], chat["span_id"]) == (ids["root"], ids["chat"])
    assert root["parent_span_id"] is None
    assert chat["parent_span_id"] == tool["parent_span_id"] == ids["root"]
    assert chat["trace_id"] == root["trace_id"] == tool["trace_id"]
    assert chat["properties"]["gen_ai.request.model"] == "gpt-4o"
    assert chat["properties"]["gen_ai.usage.input_tokens"] == 1200
    assert chat["properties"]["gen_ai.usage.output_tokens"] == 85
    assert 0 < chat["properties"]["duration_ms"] <= root["properties"]["duration_ms"]
    assert chat["properties"]["span.kind"] == "internal"
    assert tool["properties"]["status"] == "error"
    assert tool["properties"]["error.type"] == "TimeoutError"
    assert tool["properties"]["exception.message"] == "search took too long"

    inference = by_name["gen_ai.client.inference"]
    assert (inference["trace_id"], inference["span_id"]) == (chat["trace_id"], ids["chat"])
    assert inference["properties"]["log.severity_text"] == "INFO"
    assert inference["properties"]["log.body"] == "[content: 19 chars]"  # content off
    assert by_name["agent.run.finished"]["trace_id"] is None

    cumulative, delta = by_name["tokens.cumulative"], by_name["tokens.delta"]
    assert cumulative["properties"]["metric.temporality"] == "cumulative"
    assert delta["properties"]["metric.temporality"] == "delta"
    for point in (cumulative, delta):
        assert point["properties"]["metric.value"] == 1285
        assert point["properties"]["metric.monotonic"] is True
        assert point["properties"]["gen_ai.request.model"] == "gpt-4o"
    histogram = by_name["op.duration"]["properties"]
    assert (histogram["metric.type"], histogram["metric.count"]) == ("histogram", 1)
    assert sum(histogram["metric.bucket_counts"]) == 1
    assert len(histogram["metric.bucket_counts"]) == len(histogram["metric.explicit_bounds"]) + 1

    resource = by_name["otel.resource"]["properties"]
    assert (resource["service.name"], resource["service.version"]) == ("sdk-agent", "0.9")
    found = assert_balanced(daemon)
    assert found["rejected"] == 0


def test_the_same_export_sent_twice_is_stored_once(daemon: DaemonProcess) -> None:
    url = daemon.http_url()
    resource = Resource.create({"service.name": "retrying-agent"})
    spans_seen = InMemorySpanExporter()
    tracing = TracerProvider(resource=resource)
    tracing.add_span_processor(SimpleSpanProcessor(spans_seen))
    tracer = tracing.get_tracer("retry")
    for index in range(5):
        with tracer.start_as_current_span(f"step {index}"):
            pass
    records_seen = InMemoryLogRecordExporter()
    logging = LoggerProvider(resource=resource, shutdown_on_exit=False)
    logging.add_log_record_processor(SimpleLogRecordProcessor(records_seen))
    for index in range(3):
        logging.get_logger("retry").emit(body=f"line {index}", event_name="agent.step")
    span_exporter = OTLPSpanExporter(endpoint=f"{url}/v1/traces")
    log_exporter = OTLPLogExporter(endpoint=f"{url}/v1/logs")
    for _ in range(2):  # as an exporter retries when an answer was lost
        assert span_exporter.export(spans_seen.get_finished_spans()) is SpanExportResult.SUCCESS
        assert (
            log_exporter.export(records_seen.get_finished_logs()) is LogRecordExportResult.SUCCESS
        )
    names = sorted(row["event"] for row in otlp_rows(daemon))
    assert names == sorted([f"step {i}" for i in range(5)] + ["agent.step"] * 3 + ["otel.resource"])
    found = assert_balanced(daemon)
    assert found["dropped_by_reason"] == {"duplicate": 8}
    tracing.shutdown()
    logging.shutdown()


def test_invalid_items_are_refused_in_partial_success_and_the_valid_ones_stored(
    daemon: DaemonProcess,
) -> None:
    url = daemon.http_url()
    request = traces(
        span(name="kept one", span_id=bytes.fromhex("0000000000000001")),
        span(name="", span_id=bytes.fromhex("0000000000000002")),
        span(name="kept two", span_id=bytes.fromhex("0000000000000003")),
        span(name="bad id", span_id=b"\x01\x02"),
        span(name="x" * 201, span_id=bytes.fromhex("0000000000000005")),  # the wire's limit
    )
    status, headers, body = post(f"{url}/v1/traces", request.SerializeToString(), PROTOBUF)
    assert (status, headers["Content-Type"]) == (200, PROTOBUF)
    partial = ExportTraceServiceResponse.FromString(body).partial_success
    assert partial.rejected_spans == 3
    assert partial.error_message.startswith("3 of 5 spans rejected: ")
    assert "span has no name (1)" in partial.error_message
    assert "1-200 characters" in partial.error_message
    kept = sorted(row["event"] for row in otlp_rows(daemon))
    assert kept == ["kept one", "kept two", "otel.resource"]
    assert assert_balanced(daemon)["rejected"] == 3

    otlp_json = {
        "resourceSpans": [
            {
                "scopeSpans": [
                    {
                        "spans": [
                            {
                                "traceId": "5B8EFFF798038103D269B633813FC60C",
                                "spanId": "EEE19B7EC3C1B174",
                                "name": "from json",
                                "kind": 2,
                                "startTimeUnixNano": "1795554000123000000",
                                "endTimeUnixNano": "1795554000935000000",
                            },
                            {"traceId": "nothex", "spanId": "EEE19B7EC3C1B175", "name": "bad"},
                        ]
                    }
                ]
            }
        ]
    }
    status, headers, body = post(
        f"{url}/v1/traces",
        json.dumps(otlp_json).encode(),
        "application/json",
        headers={"X-Agent-Name": "json-agent"},
    )
    assert (status, headers["Content-Type"]) == (200, "application/json")
    answer = json.loads(body)
    assert answer["partialSuccess"]["rejectedSpans"] == "1"
    (row,) = [r for r in otlp_rows(daemon) if r["event"] == "from json"]
    assert (row["agent"], row["trace_id"]) == ("json-agent", "5b8efff798038103d269b633813fc60c")
    assert row["timestamp"] == "2026-11-24T21:00:00.123Z"
    assert row["properties"]["duration_ms"] == 812.0
    assert assert_balanced(daemon)["rejected"] == 4


def test_items_past_the_per_request_cap_are_refused_and_the_first_ones_kept(
    daemon: DaemonProcess,
) -> None:
    """8 MiB holds ~140,000 tiny log records: past 10,000 in one request, the rest are
    refused, counted and named in the answer, and the first 10,000 are kept."""
    request = logs(*[record(f"entry {i}", event_name="step") for i in range(6_000)])
    # A second list, cut in its middle: the cap counts across every list of the request.
    request.resource_logs[0].scope_logs.add().log_records.extend(
        record(f"more {i}", event_name="step") for i in range(4_003)
    )
    status, _, body = post(f"{daemon.http_url()}/v1/logs", request.SerializeToString(), PROTOBUF)
    assert status == 200
    partial = ExportLogsServiceResponse.FromString(body).partial_success
    assert partial.rejected_log_records == 3
    assert (
        "more than 10,000 log records in one request; send smaller batches (3)"
        in partial.error_message
    )
    assert sum(row["event"] == "step" for row in otlp_rows(daemon)) == 10_000
    assert assert_balanced(daemon)["rejected"] == 3


def test_what_is_not_otlp_is_refused_with_a_status_and_counted(daemon: DaemonProcess) -> None:
    url = daemon.http_url()
    status, headers, body = post(f"{url}/v1/traces", b"\xff\xfe garbage \x00", PROTOBUF)
    assert (status, headers["Content-Type"]) == (400, PROTOBUF)
    assert "not a binary ExportTraceServiceRequest" in Status.FromString(body).message
    assert assert_balanced(daemon)["rejected"] == 1

    status, _, body = post(f"{url}/v1/metrics", b"{not json", "application/json")
    assert (status, json.loads(body)["message"]) == (400, "request body is not valid JSON")
    status, _, body = post(f"{url}/v1/logs", b"hello", "text/plain")
    assert status == 415 and "application/x-protobuf" in json.loads(body)["message"]
    bomb = gzip.compress(b"\x00" * (9 * 1024 * 1024))  # inflates past the 8 MiB limit
    status, _, body = post(f"{url}/v1/traces", bomb, PROTOBUF, headers={"Content-Encoding": "gzip"})
    assert status == 413 and "more than" in Status.FromString(body).message
    found = assert_balanced(daemon)
    assert (found["rejected"], found["stored"]) == (4, 0)


def test_a_foreign_origin_or_host_is_refused(daemon: DaemonProcess) -> None:
    url = daemon.http_url()
    body = traces(span()).SerializeToString()
    for headers in ({"Origin": "https://evil.example"}, {"Host": "evil.example"}):
        status, _, _ = post(f"{url}/v1/traces", body, PROTOBUF, headers=headers)
        assert status == 403
    assert counters(daemon)["received"] == 0


def test_a_full_buffer_asks_the_exporter_to_retry_later(daemon_factory: Any) -> None:
    daemon = daemon_factory({"AGENT_TELEMETRY_MAX_EVENTS": "2"})
    request = traces(*(span(span_id=bytes([0, 0, 0, 0, 0, 0, 0, i + 1])) for i in range(3)))
    url = f"{daemon.http_url()}/v1/traces"
    status, headers, body = post(url, request.SerializeToString(), PROTOBUF)
    assert (status, headers["Retry-After"]) == (503, "5")
    assert "buffer full" in Status.FromString(body).message
    found = assert_balanced(daemon)
    assert found["dropped_by_reason"]["buffer_full"] >= 1


def buffer_bytes(daemon: DaemonProcess) -> bytes:
    found = b""
    for suffix in ("", "-wal"):
        path = daemon.database.with_name(daemon.database.name + suffix)
        if path.exists():
            found += path.read_bytes()
    return found


def send_canaries(url: str) -> None:
    resource = Resource.create({"service.name": "canary-agent"})
    exporters = http_exporters(url)
    with (
        tracer_provider(exporters, resource) as tracing,
        logger_provider(exporters, resource) as logging,
    ):
        tracer = tracing.get_tracer("canary")
        with tracer.start_as_current_span("chat") as chat:
            chat.set_attribute(
                "gen_ai.input.messages",
                json.dumps([{"role": "user", "parts": [{"content": CANARY_PROMPT}]}]),
            )
        with tracer.start_as_current_span("read file") as failed:
            failed.set_status(
                SpanStatus(
                    StatusCode.ERROR,
                    "cannot open /home/alice/secret-plans.txt with sk-proj-abcdefghijklmnop12345",
                )
            )
        logging.get_logger("canary").emit(body=CANARY_BODY, event_name="user.message")
    shim_event = {"event": "shim.llm", "properties": {"gen_ai.prompt": CANARY_PROMPT}}
    status, _ = post_events(url, [shim_event])
    assert status == 202


def test_content_is_off_by_default_nowhere_in_the_buffer_file(daemon: DaemonProcess) -> None:
    send_canaries(daemon.http_url())
    rows = {row["event"]: row for row in daemon.export()}
    assert rows["chat"]["properties"]["gen_ai.input.messages"].startswith("[content: ")
    body = rows["user.message"]["properties"]["log.body"]
    assert body == f"[content: {len(CANARY_BODY)} chars]"
    prompt = rows["shim.llm"]["properties"]["gen_ai.prompt"]
    assert prompt == f"[content: {len(CANARY_PROMPT)} chars]"
    message = rows["read file"]["properties"]["status.message"]
    assert message == "cannot open ~/secret-plans.txt with [secret]"
    stored = buffer_bytes(daemon)
    assert stored  # the rows are in there, as bytes: none of the canaries is
    for canary in (CANARY_PROMPT, CANARY_BODY, "/home/alice", "sk-proj-abcdefghijklmnop12345"):
        assert canary.encode() not in stored, canary


def test_with_capture_on_content_is_kept(daemon_factory: Any) -> None:
    daemon = daemon_factory(
        {"AGENT_TELEMETRY_CAPTURE_CONTENT": "1", "AGENT_TELEMETRY_RATE_LIMIT": "off"}
    )
    send_canaries(daemon.http_url())
    rows = {row["event"]: row for row in daemon.export()}
    assert CANARY_PROMPT in rows["chat"]["properties"]["gen_ai.input.messages"]
    assert rows["user.message"]["properties"]["log.body"] == CANARY_BODY
    assert rows["shim.llm"]["properties"]["gen_ai.prompt"] == CANARY_PROMPT
    # Kept content is still scrubbed, and so is the exception message.
    assert "/home/alice" not in rows["read file"]["properties"]["status.message"]


def test_in_mode_off_an_export_succeeds_and_nothing_is_kept(daemon_factory: Any) -> None:
    daemon = daemon_factory({"AGENT_TELEMETRY_MODE": "off"})
    status, _, body = post(
        f"{daemon.http_url()}/v1/traces", traces(span()).SerializeToString(), PROTOBUF
    )
    assert (status, body) == (200, b"")  # an exporter must not retry what was declined
    assert not daemon.database.exists()
    found = assert_balanced(daemon)
    assert found["dropped_by_reason"] == {"mode_off": 2}  # the span and its resource
