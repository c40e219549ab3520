"""OTLP: spans/s committed from 4 exporter processes posting OTLP/HTTP protobuf batches of
512 spans of 20 attributes, and the daemon's CPU per span, against the OpenTelemetry
Collector's published ~12k spans/s on one CPU (its own testbed: OpenTelemetry format,
spans of 20 attributes, docs/performance.md in the Collector's repository).

The exporters' request bodies are made by OpenTelemetry's own SDK and OTLP encoder
before the clock starts, so the machine's cores go to the daemon while it runs. The
daemon's CPU is its utime + stime over the run, all threads. Also measured in this
process on one core: the steps a span goes through before the writer (decoding, mapping,
content masking and checks; the vocabulary; scrubbing), to show where the time goes;
and the daemon's RSS with the gRPC extra installed but not configured, against a daemon
that cannot import gRPC at all.
"""

from __future__ import annotations

import http.client
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from agent_telemetryd.cli.api_client import ApiClient
from bench import fixtures
from bench.idle import sample
from bench.report import Row, median
from bench.steady import loop_thread_seconds

SECTION = "otlp"
EXPORTERS = 4
BATCH_SPANS = 512
COLLECTOR_SPANS_PER_CPU = 12_000  # its docs/performance.md: OpenTelemetry format, 1 CPU
TARGET_RATIO = 2.0
SETTLE = 2.0


def span_batches(count: int, seed: int) -> list[bytes]:
    """`count` ExportTraceServiceRequest bodies of BATCH_SPANS spans, each span with 20
    attributes of the GenAI conventions (model, tokens, server, response id …), made and
    encoded by OpenTelemetry's Python SDK."""
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": f"bench-agent-{seed}"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("bench", "1.0")
    bodies = []
    for batch in range(count):
        memory.clear()
        for i in range(BATCH_SPANS):
            n = batch * BATCH_SPANS + i
            with tracer.start_as_current_span("chat gpt-4o") as span:
                span.set_attributes(_attributes(seed, n))
        bodies.append(encode_spans(memory.get_finished_spans()).SerializeToString())
    provider.shutdown()
    return bodies


def _attributes(seed: int, n: int) -> dict[str, Any]:
    return {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o",
        "gen_ai.response.model": "gpt-4o-2024-08-06",
        "gen_ai.usage.input_tokens": 1200 + n % 4000,
        "gen_ai.usage.output_tokens": 85 + n % 500,
        "gen_ai.request.temperature": 0.2,
        "gen_ai.request.max_tokens": 1024,
        "gen_ai.response.id": f"chatcmpl-{seed}-{n:08d}",
        "gen_ai.response.finish_reasons": ["stop"],
        "gen_ai.conversation.id": f"conv-{seed}-{n // 10}",
        "gen_ai.agent.name": "planner",
        "server.address": "api.openai.com",
        "server.port": 443,
        "http.request.method": "POST",
        "http.response.status_code": 200,
        "url.path": "/v1/chat/completions",
        "user_agent.original": "openai-python/1.50.0",
        "retry.count": n % 3,
        "cache.hit": n % 3 == 0,
    }


def _exporter(port: int, count: int, seed: int, go: Any, ready: Any, failures: Any) -> None:
    bodies = span_batches(count, seed)
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    headers = {"Content-Type": "application/x-protobuf"}
    ready.release()
    go.wait()
    for body in bodies:
        connection.request("POST", "/v1/traces", body=body, headers=headers)
        answer = connection.getresponse()
        content = answer.read()
        if answer.status != 200 or content:  # content: a partial_success
            failures.put(f"HTTP {answer.status}: {content[:200]!r}")
    connection.close()


def throughput_run(proc: fixtures.DaemonProcess, batches: int, run: int) -> dict[str, float]:
    """Spans/s committed and daemon CPU seconds, EXPORTERS processes posting together."""
    ctx = multiprocessing.get_context("fork")
    go, ready, failures = ctx.Event(), ctx.Semaphore(0), ctx.Queue()
    port = fixtures.http_port(proc)
    base = fixtures.stored(fixtures.read_only(proc.database))
    workers = [
        ctx.Process(target=_exporter, args=(port, batches, run * 100 + i, go, ready, failures))
        for i in range(EXPORTERS)
    ]
    for worker in workers:
        worker.start()
    for _ in workers:
        if not ready.acquire(timeout=300):
            raise TimeoutError("an exporter did not get ready")
    spans = EXPORTERS * batches * BATCH_SPANS
    assert proc.proc is not None
    cpu_before = sample(proc.proc.pid)["cpu_s"]
    loop_before = loop_thread_seconds(proc.proc.pid)[0]
    start = time.monotonic()
    go.set()
    # Each exporter's resource (its own service.name) is one more event, kept once.
    end = fixtures.wait_stored(proc.database, base + spans + EXPORTERS, timeout=600)
    cpu = sample(proc.proc.pid)["cpu_s"] - cpu_before
    loop = loop_thread_seconds(proc.proc.pid)[0] - loop_before
    for worker in workers:
        worker.join()
    if not failures.empty():
        raise RuntimeError(f"an export was not fully accepted: {failures.get()}")
    return {"spans": spans, "seconds": end - start, "cpu_s": cpu, "loop_cpu_s": loop}


def pipeline_costs(bodies: list[bytes]) -> dict[str, float]:
    """CPU microseconds per span of each step before the writer, on one core, in this
    process (CPU time: another process taking the core meanwhile does not count). The
    objects are kept across bodies as the daemon keeps them (their caches warm)."""
    from agent_telemetryd.analytics.vocabulary import Vocabulary
    from agent_telemetryd.events import Limits
    from agent_telemetryd.otlp.decode import PROTOBUF, decode
    from agent_telemetryd.otlp.event_checks import EventChecks
    from agent_telemetryd.otlp.signals import TRACES
    from agent_telemetryd.privacy.content import ContentMask
    from agent_telemetryd.privacy.scrub import default_scrubber

    mask, checks, scrub = ContentMask(), EventChecks(Limits()), default_scrubber(4096)
    vocabulary = Vocabulary()
    steps = dict.fromkeys(("decode_map", "vocabulary", "scrub", "encode"), 0.0)
    spans = 0
    for body in bodies:
        t0 = time.process_time()
        events = decode(TRACES, body, PROTOBUF, checks, mask).events
        t1 = time.process_time()
        events = [vocabulary(event) for event in events]
        t2 = time.process_time()
        events = [scrub(event) for event in events]
        t3 = time.process_time()
        for event in events:
            orjson.dumps(event.properties)
        t4 = time.process_time()
        times = (t1 - t0, t2 - t1, t3 - t2, t4 - t3)
        for name, seconds in zip(steps, times, strict=True):
            steps[name] += seconds
        spans += len(events)
    return {name: seconds / spans * 1e6 for name, seconds in steps.items()}


def rss_after_settling(extra_env: dict[str, str]) -> tuple[float, set[str]]:
    with fixtures.daemon(extra_env) as proc:
        assert proc.proc is not None
        time.sleep(SETTLE)
        rss = sample(proc.proc.pid)["rss_mb"]
        modules = set(ApiClient(proc.api_socket).json("GET", "/v1/debug/modules")["modules"])
    return rss, modules


def footprint_rows(reps: int) -> list[Row]:
    """RSS of a daemon with gRPC installed but not configured, against one that cannot
    import it (a `grpc` package that raises ImportError, first on its path)."""
    with tempfile.TemporaryDirectory(prefix="at-nogrpc-") as hide:
        package = Path(hide) / "grpc"
        package.mkdir()
        (package / "__init__.py").write_text("raise ImportError('hidden for the benchmark')\n")
        path = os.pathsep.join(filter(None, [hide, os.environ.get("PYTHONPATH")]))
        installed, hidden, configured = [], [], []
        loaded: set[str] = set()
        for _ in range(reps):  # interleaved: a busy moment hits all three alike
            rss, loaded = rss_after_settling({})
            installed.append(rss)
            hidden.append(rss_after_settling({"PYTHONPATH": path})[0])
            configured.append(rss_after_settling({"AGENT_TELEMETRY_OTLP_GRPC_PORT": "0"})[0])
    anchor = median(hidden)
    value = median(installed)
    unchanged = "grpc" not in loaded and value <= anchor * 1.02
    return [
        Row(SECTION, "daemon RSS, gRPC extra installed, not configured", value, "MB",
            "gRPC not importable", anchor, value / anchor, "unchanged (<= 1.02x)", unchanged,
            note="grpc " + ("loaded" if "grpc" in loaded else "not loaded")
            + f" (GET /v1/debug/modules); median of {reps}, each {SETTLE:.0f} s after start"),
        Row(SECTION, "daemon RSS, gRPC configured (otlp_grpc_port)", median(configured), "MB",
            "gRPC not importable", anchor, median(configured) / anchor),
    ]  # fmt: skip


def run(quick: bool) -> list[Row]:
    batches = 1 if quick else 20
    reps = 1 if quick else 3
    runs: list[dict[str, float]] = []
    with fixtures.daemon({"AGENT_TELEMETRY_RATE_LIMIT": "off"}) as proc:
        for run_index in range(reps):
            runs.append(throughput_run(proc, batches, run_index))
    rates = [r["spans"] / r["seconds"] for r in runs]
    per_core = [r["spans"] / r["cpu_s"] for r in runs if r["cpu_s"] > 0]
    cpu_per_1000 = [r["cpu_s"] / r["spans"] * 1000 for r in runs]
    cores_used = [r["cpu_s"] / r["seconds"] for r in runs]
    loop_per_span = median(r["loop_cpu_s"] / r["spans"] * 1e6 for r in runs)
    rest_per_span = median((r["cpu_s"] - r["loop_cpu_s"]) / r["spans"] * 1e6 for r in runs)
    rate, core_rate, cost = median(rates), median(per_core), median(cpu_per_1000)
    collector_cost = 1000 / COLLECTOR_SPANS_PER_CPU
    spans = int(runs[0]["spans"])
    rows = [
        Row(SECTION, f"OTLP/HTTP protobuf, {EXPORTERS} exporters, {BATCH_SPANS}-span batches",
            rate, "spans/s", "Collector, 1 CPU", COLLECTOR_SPANS_PER_CPU,
            rate / COLLECTOR_SPANS_PER_CPU,
            note=f"{spans:,} spans of 20 attributes per run, median of {reps}; the daemon used"
            f" {median(cores_used):.2f} cores"),
        Row(SECTION, "spans/s per daemon core used", core_rate, "spans/s", "Collector, 1 CPU",
            COLLECTOR_SPANS_PER_CPU, core_rate / COLLECTOR_SPANS_PER_CPU,
            f">= {TARGET_RATIO:.0f}x", core_rate >= TARGET_RATIO * COLLECTOR_SPANS_PER_CPU,
            note="the Collector's published sustained rate (OpenTelemetry format, spans of"
            f" 20 attributes, one 2+ GHz CPU); the daemon's CPU a span: {loop_per_span:.1f} µs"
            f" on its event loop's thread (HTTP, ingest), {rest_per_span:.1f} µs on the"
            " others (decoding, writer, checkpointer)"),
        Row(SECTION, "daemon CPU-seconds per 1,000 spans", cost, "s", "Collector, 1 CPU",
            collector_cost, cost / collector_cost, f"<= {1 / TARGET_RATIO:.1f}x",
            cost <= collector_cost / TARGET_RATIO),
    ]  # fmt: skip
    costs = pipeline_costs(span_batches(2 if quick else 8, seed=999))
    total = sum(costs.values())
    for name, label in (
        ("decode_map", "decode, map, mask content, check (opentelemetry-proto, otlp/)"),
        ("vocabulary", "vocabulary (analytics/vocabulary.py)"),
        ("scrub", "scrub (privacy/scrub.py)"),
        ("encode", "properties to JSON"),
    ):
        rows.append(
            Row(SECTION, f"per span before the writer: {label}", costs[name], "µs",
                "all those steps", total, costs[name] / total)
        )  # fmt: skip
    spans_per_s = 1e6 / total
    rows[-len(costs)].note = f"one core in the bench process: {spans_per_s:,.0f} spans/s for all"
    rows.extend(footprint_rows(1 if quick else 3))
    return rows


def against(revision: str, rounds: int = 3, batches: int = 20) -> None:
    """Spans per daemon CPU-second of this tree's daemon and of `revision`'s, alternated in
    one run (on a shared machine only a comparison made within one run holds). Each
    daemon runs its own tree's code: `revision` from `git archive`, put first on its path.

        .venv/bin/python -m bench.otlp --against main
    """
    import subprocess

    root = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory(prefix="at-otlp-ab-") as tmp:
        export = subprocess.run(
            ["git", "-C", str(root), "archive", revision, "daemon", "client_shim"],
            check=True, capture_output=True,
        ).stdout  # fmt: skip
        subprocess.run(["tar", "-x", "-C", tmp], input=export, check=True)
        trees = {revision: Path(tmp), "this tree": root}
        found: dict[str, list[float]] = {name: [] for name in trees}
        for round_index in range(rounds):
            order = list(trees) if round_index % 2 == 0 else list(trees)[::-1]
            for name in order:
                path = os.pathsep.join(
                    str(trees[name] / part) for part in ("daemon", "client_shim")
                )
                env = {"AGENT_TELEMETRY_RATE_LIMIT": "off", "PYTHONPATH": path}
                with fixtures.daemon(env) as proc:
                    for run_index in range(2):
                        result = throughput_run(proc, batches, round_index * 10 + run_index)
                        found[name].append(result["spans"] / result["cpu_s"])
                        print(f"{name}: {found[name][-1]:,.0f} spans per CPU-second", flush=True)
    for name, values in found.items():
        print(f"{name}: median {median(values):,.0f} of {', '.join(f'{v:,.0f}' for v in values)}")
    print(f"this tree / {revision}: {median(found['this tree']) / median(found[revision]):.2f}x")


if __name__ == "__main__":
    from bench.report import format_table

    if "--against" in sys.argv:
        against(sys.argv[sys.argv.index("--against") + 1])
    else:
        print(format_table(run("--quick" in sys.argv)))
