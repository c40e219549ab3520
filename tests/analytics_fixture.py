"""A small agent workload with every number of its views worked out by hand.

Three runs and a few loose events. Run A (agent `planner`) arrives out of order, its
root last; run B (`coder`) has a reported cost, a model no price table knows and a log
line inside a span; run C comes from OpenTelemetry's own Python SDK over OTLP/HTTP.
Prices (USD per million tokens, the shipped table): gpt-4o 2.50 in / 10.00 out / 1.25
cached; claude-sonnet-4-5 3.00 in / 15.00 out / 0.30 cache read; `house-model` none.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import Status, StatusCode

TRACE_A, TRACE_B = "a" * 32, "b" * 32
A1, A2, A3, A4, A5 = (f"a{i:015x}" for i in range(1, 6))
B1, B2, B3, B4 = (f"b{i:015x}" for i in range(1, 5))
ERROR_WORDS = "search backend returned 503"


def _at(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


def _span(
    name: str, agent: str, trace_id: str, span_id: str, parent: str | None, at: int, **props: Any
) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event": name,
        "agent": agent,
        "timestamp": _at(at),
        "trace_id": trace_id,
        "span_id": span_id,
        "properties": props,
    }
    if parent is not None:
        event["parent_span_id"] = parent
    return event


def start_ms() -> int:
    """Two hours ago, on a whole second: every run starts within the last day."""
    return (int(time.time()) - 2 * 3600) * 1000


def shim_events(t0: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(every event but run A's root, in the order sent; run A's root, sent last). The
    short forms a shim user types, as they would type them."""
    a, b = t0 + 10_000, t0 + 20_000
    run_a_children = [
        _span("llm.call", "planner", TRACE_A, A5, A1, a + 2000, model="claude-sonnet-4-5",
              input_tokens=20_000, cache_read_tokens=8_000, output_tokens=500, duration_ms=2000),
        _span("tool.call", "planner", TRACE_A, A4, A3, a + 1600, tool="fetch", status="error",
              **{"error.type": "TimeoutError"}, duration_ms=100),
        _span("llm.call", "planner", TRACE_A, A2, A1, a + 100, model="gpt-4o", tokens_in=10_000,
              tokens_out=1_000, duration_ms=1200),
        _span("tool.call", "planner", TRACE_A, A3, A1, a + 1500, tool="search", duration_ms=300),
    ]  # fmt: skip
    run_b = [
        _span("agent.run", "coder", TRACE_B, B1, None, b, duration_ms=3000),
        _span("llm.call", "coder", TRACE_B, B2, B1, b + 100, model="gpt-4o", tokens_in=5_000,
              tokens_out=100, cost_usd=0.2, duration_ms=800),
        _span("tool.call", "coder", TRACE_B, B4, B2, b + 200, tool="search", error="boom",
              duration_ms=50),
        # A log line inside span B2: in the run, not a span of it.
        {"event": "note", "agent": "coder", "timestamp": _at(b + 300), "trace_id": TRACE_B,
         "span_id": B2, "properties": {"level": "info"}},
        _span("llm.call", "coder", TRACE_B, B3, B1, b + 1000, model="house-model",
              tokens_in=700, tokens_out=70, duration_ms=400),
    ]  # fmt: skip
    loose = [
        {"event": "llm.call", "agent": "planner", "timestamp": _at(t0 + 40_000),
         "properties": {"model": "gpt-4o", "tokens_in": 2000, "tokens_out": 200,
                        "cost_usd": "0.05", "duration_ms": 600}},
        {"event": "llm.call", "agent": "coder", "timestamp": _at(t0 + 41_000),
         "properties": {"model": "house-model", "status": "error", "duration_ms": 900}},
        {"event": "tool.call", "agent": "coder", "timestamp": _at(t0 + 42_000),
         "properties": {"tool": "search", "duration_ms": 100}},
        {"event": "page.view", "agent": "planner", "timestamp": _at(t0 + 43_000),
         "properties": {"path": "/"}},
    ]  # fmt: skip
    root_a = _span("agent.run", "planner", TRACE_A, A1, None, a, duration_ms=5000)
    return run_b + loose + run_a_children, root_a


def send_run_c(url: str, t0: int) -> str:
    """Run C through OpenTelemetry's Python SDK and OTLP/HTTP exporter, unchanged, with
    its times set: a root, an LLM call named by the conventions, and a failing tool call
    marked only by `gen_ai.operation.name`. Returns its trace id."""
    provider = TracerProvider(resource=Resource.create({"service.name": "sdk-agent"}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{url}/v1/traces")))
    ns = 1_000_000
    c = (t0 + 30_000) * ns
    try:
        tracer = provider.get_tracer("fixture")
        root = tracer.start_span("invoke_agent helper", start_time=c)
        inside = trace.set_span_in_context(root)
        chat = tracer.start_span(
            "chat gpt-4o",
            context=inside,
            start_time=c + 100 * ns,
            attributes={
                "gen_ai.operation.name": "chat",
                "gen_ai.request.model": "gpt-4o",
                "gen_ai.usage.input_tokens": 1000,
                "gen_ai.usage.output_tokens": 100,
            },
        )
        chat.end(end_time=c + 350 * ns)
        tool = tracer.start_span(
            "execute_tool search",
            context=inside,
            start_time=c + 400 * ns,
            attributes={"gen_ai.operation.name": "execute_tool"},
        )
        tool.record_exception(ValueError(ERROR_WORDS))
        tool.set_status(Status(StatusCode.ERROR))
        tool.end(end_time=c + 470 * ns)
        root.end(end_time=c + 1000 * ns)
        return format(root.get_span_context().trace_id, "032x")
    finally:
        provider.shutdown()


# --- the views, by hand ------------------------------------------------------------------
# gpt-4o: A2 10,000 in × 2.50 + 1,000 out × 10.00 = 0.025 + 0.010 = 0.035 (priced)
#         B2 reported 0.20; loose reported "0.05"; C2 1,000 × 2.50 + 100 × 10.00 = 0.0035
#         = 0.2885; durations 1200, 800, 600, 250 -> p50 600 (2nd of 4), p95 1200
# claude-sonnet-4-5: A5 20,000 in of which 8,000 cache reads: 12,000 × 3.00 + 8,000 × 0.30
#         + 500 × 15.00 = 0.036 + 0.0024 + 0.0075 = 0.0459
# house-model: B3 (700/70 tokens, no price) and a loose call with no tokens: cost unknown
MODELS = {
    "gpt-4o": {
        "provider": "openai", "calls": 4, "input_tokens": 18_000, "output_tokens": 1_400,
        "cache_read_tokens": 0, "cost_usd": 0.2885, "unpriced_calls": 0, "errors": 0,
        "error_rate": 0.0, "p50_ms": 600, "p95_ms": 1200,
    },
    "claude-sonnet-4-5": {
        "provider": "anthropic", "calls": 1, "input_tokens": 20_000, "output_tokens": 500,
        "cache_read_tokens": 8_000, "cost_usd": 0.0459, "unpriced_calls": 0, "errors": 0,
        "error_rate": 0.0, "p50_ms": 2000, "p95_ms": 2000,
    },
    "house-model": {
        "provider": None, "calls": 2, "input_tokens": 700, "output_tokens": 70,
        "cache_read_tokens": 0, "cost_usd": None, "unpriced_calls": 2, "errors": 1,
        "error_rate": 0.5, "p50_ms": 400, "p95_ms": 900,
    },
}  # fmt: skip
TOTAL_COST = 0.2885 + 0.0459
# search: A3 300, B4 50 (error), loose 100, C3 70 (error) -> p50 70, p95 300
TOOLS = {
    "search": {"calls": 4, "errors": 2, "error_rate": 0.5, "p50_ms": 70, "p95_ms": 300},
    "fetch": {"calls": 1, "errors": 1, "error_rate": 1.0, "p50_ms": 100, "p95_ms": 100},
}


def runs(t0: int, trace_c: str) -> list[dict[str, Any]]:
    """Newest first: C (t0+30 s), B (t0+20 s), A (t0+10 s)."""
    return [
        {"trace_id": trace_c, "root": "invoke_agent helper", "agent": "sdk-agent",
         "start_ms": t0 + 30_000, "duration_ms": 1000, "spans": 3, "llm_calls": 1,
         "input_tokens": 1000, "output_tokens": 100, "cost_usd": 0.0035, "unpriced_calls": 0,
         "errors": 1},
        {"trace_id": TRACE_B, "root": "agent.run", "agent": "coder", "start_ms": t0 + 20_000,
         "duration_ms": 3000, "spans": 4, "llm_calls": 2, "input_tokens": 5700,
         "output_tokens": 170, "cost_usd": 0.2, "unpriced_calls": 1, "errors": 1},
        {"trace_id": TRACE_A, "root": "agent.run", "agent": "planner", "start_ms": t0 + 10_000,
         "duration_ms": 5000, "spans": 5, "llm_calls": 2, "input_tokens": 30_000,
         "output_tokens": 1500, "cost_usd": 0.035 + 0.0459, "unpriced_calls": 0, "errors": 1},
    ]  # fmt: skip


# Run A as a waterfall: (name, span, depth), in start order under each parent.
WATERFALL_A = [
    ("agent.run", A1, 0),
    ("llm.call", A2, 1),
    ("tool.call", A3, 1),
    ("tool.call", A4, 2),
    ("llm.call", A5, 1),
]
# Run B: the log line sits under the span it was written in.
WATERFALL_B = [
    ("agent.run", B1, 0),
    ("llm.call", B2, 1),
    ("tool.call", B4, 2),
    ("note", None, 2),
    ("llm.call", B3, 1),
]
