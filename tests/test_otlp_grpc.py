"""OTLP/gRPC (the [otlp-grpc] extra) against the real daemon: OpenTelemetry's own Python
gRPC exporters, unchanged, land exactly what the HTTP ones do; answers are gRPC statuses;
and a daemon that is not asked for gRPC never loads it."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc.error_details_pb2 import RetryInfo
from google.rpc.status_pb2 import Status
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.logs.v1.logs_service_pb2_grpc import LogsServiceStub
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import TraceServiceStub

from agent_telemetryd.cli.api_client import ApiClient
from agent_telemetryd.otlp.grpc_extra import GRPC_MISSING
from agent_telemetryd.receivers.otlp_grpc import is_loopback_peer
from tests.daemon_process import DaemonProcess
from tests.otlp_messages import logs, record, span, traces
from tests.test_daemon_ingest import send_lines, wait_for_rows
from tests.test_otlp_receiver import (
    Exporters,
    assert_balanced,
    assert_the_agent_run_landed,
    otlp_rows,
    run_an_agent,
)

GRPC_ON = {"AGENT_TELEMETRY_OTLP_GRPC_PORT": "0", "AGENT_TELEMETRY_RATE_LIMIT": "off"}


def grpc_address(daemon: DaemonProcess) -> str:
    address = daemon.status()["otlp"]["grpc"]
    assert address.startswith("127.0.0.1:")
    return str(address)


def grpc_exporters(address: str) -> Exporters:
    endpoint = f"http://{address}"
    return Exporters(
        spans=lambda: OTLPSpanExporter(endpoint=endpoint, insecure=True),
        logs=lambda: OTLPLogExporter(endpoint=endpoint, insecure=True),
        metrics=lambda **kw: OTLPMetricExporter(endpoint=endpoint, insecure=True, **kw),
    )


def loaded_modules(daemon: DaemonProcess) -> set[str]:
    return set(ApiClient(daemon.api_socket).json("GET", "/v1/debug/modules")["modules"])


def test_the_python_sdk_grpc_exporters_land_the_same_events_as_http(daemon_factory: Any) -> None:
    daemon = daemon_factory(GRPC_ON)
    ids = run_an_agent(grpc_exporters(grpc_address(daemon)))
    assert_the_agent_run_landed(daemon, ids)
    assert "grpc" in loaded_modules(daemon)


def test_refused_items_come_back_in_partial_success_and_garbage_is_invalid_argument(
    daemon_factory: Any,
) -> None:
    daemon = daemon_factory(GRPC_ON)
    with grpc.insecure_channel(grpc_address(daemon)) as channel:
        request = traces(
            span(name="kept", span_id=bytes.fromhex("0000000000000001")),
            span(name="", span_id=bytes.fromhex("0000000000000002")),
            span(name="bad id", span_id=b"\x01"),
        )
        answer: ExportTraceServiceResponse = TraceServiceStub(channel).Export(request, timeout=30)
        assert answer.partial_success.rejected_spans == 2
        assert answer.partial_success.error_message.startswith("2 of 3 spans rejected: ")

        raw = channel.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export")
        with pytest.raises(grpc.RpcError) as refused:
            raw(b"\xff\xfe garbage \x00", timeout=30)
        assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert "not a binary ExportTraceServiceRequest" in refused.value.details()

        # The x-agent-name metadata names the source when the resource does not.
        LogsServiceStub(channel).Export(
            logs(record(body="hi"), resource={"host.name": "box"}),
            metadata=[("x-agent-name", "metadata-agent")],
            timeout=30,
        )
    rows = {row["event"]: row for row in otlp_rows(daemon)}
    assert rows["kept"]["agent"] == "planner"
    assert rows["log"]["agent"] == "metadata-agent"
    found = assert_balanced(daemon)
    assert found["rejected"] == 3  # two spans and the garbage


def test_a_full_buffer_is_resource_exhausted_with_a_retry_delay(daemon_factory: Any) -> None:
    daemon = daemon_factory({**GRPC_ON, "AGENT_TELEMETRY_MAX_EVENTS": "2"})
    request = traces(*(span(span_id=bytes([0, 0, 0, 0, 0, 0, 0, i + 1])) for i in range(3)))
    with (
        grpc.insecure_channel(grpc_address(daemon)) as channel,
        pytest.raises(grpc.RpcError) as refused,
    ):
        TraceServiceStub(channel).Export(request, timeout=30)
    error = refused.value
    assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "buffer full" in error.details()
    trailers = dict(error.trailing_metadata())
    status = Status.FromString(trailers["grpc-status-details-bin"])
    info = RetryInfo()
    assert status.details[0].Unpack(info)
    assert info.retry_delay.seconds == 5
    assert RetryInfo.FromString(trailers["google.rpc.retryinfo-bin"]) == info
    assert assert_balanced(daemon)["dropped_by_reason"]["buffer_full"] >= 1


def test_in_mode_off_an_export_succeeds_and_nothing_is_kept(daemon_factory: Any) -> None:
    daemon = daemon_factory({**GRPC_ON, "AGENT_TELEMETRY_MODE": "off"})
    with grpc.insecure_channel(grpc_address(daemon)) as channel:
        answer = TraceServiceStub(channel).Export(traces(span()), timeout=30)
    assert not answer.HasField("partial_success")
    assert not daemon.database.exists()
    assert assert_balanced(daemon)["dropped_by_reason"] == {"mode_off": 2}


def test_a_daemon_without_grpc_configured_never_loads_it(daemon: DaemonProcess) -> None:
    modules = loaded_modules(daemon)
    assert "aiohttp" in modules  # the route lists what is loaded, not nothing
    assert "grpc" not in modules
    assert daemon.status().get("otlp") == {}


def test_grpc_configured_without_the_extra_leaves_the_daemon_running_and_says_how_to_install_it(
    daemon_factory: Any, tmp_path: Path
) -> None:
    """A missing optional extra used to stop the start (exit 3), taking ingest.sock with it:
    a reinstall without the extra would leave every shim's events in the spool."""
    # grpcio is a dev dependency here; a package of the same name that cannot be
    # imported stands in for a machine without the extra.
    hidden = tmp_path / "hide-grpc" / "grpc"
    hidden.mkdir(parents=True)
    (hidden / "__init__.py").write_text("raise ImportError('grpcio is not installed here')\n")
    path = os.pathsep.join(filter(None, [str(hidden.parent), os.environ.get("PYTHONPATH")]))
    daemon = daemon_factory({**GRPC_ON, "PYTHONPATH": path})
    send_lines(daemon.ingest_socket, b'{"event": "over.the.socket"}\n')
    wait_for_rows(daemon, 1)
    assert [row["event"] for row in daemon.export()] == ["over.the.socket"]
    assert daemon.status()["otlp"] == {"grpc_unavailable": GRPC_MISSING}
    assert f"otlp:         no OTLP/gRPC listener: {GRPC_MISSING}" in daemon.cli("status").stdout
    check = doctor_check(daemon, "otlp_grpc_port")
    assert check["verdict"] == "fail" and GRPC_MISSING in check["detail"]
    assert check["fix"].startswith("pip install 'agent-telemetry[otlp-grpc]' and restart")
    assert "pip install 'agent-telemetry[otlp-grpc]'" in daemon.log()
    assert daemon.proc is not None and daemon.proc.poll() is None


def test_a_taken_grpc_port_leaves_the_daemon_and_the_otlp_http_port_running(
    daemon_factory: Any,
) -> None:
    with socket.socket() as collector:  # a real listening socket, as a collector holds 4317
        collector.bind(("127.0.0.1", 0))
        collector.listen()
        port = collector.getsockname()[1]
        env = {**GRPC_ON, "AGENT_TELEMETRY_OTLP_GRPC_PORT": str(port)}
        daemon = daemon_factory({**env, "AGENT_TELEMETRY_OTLP_HTTP_PORT": "0"})
        send_lines(daemon.ingest_socket, b'{"event": "over.the.socket"}\n')
        wait_for_rows(daemon, 1)
        assert [row["event"] for row in daemon.export()] == ["over.the.socket"]
        otlp = daemon.status()["otlp"]
        assert sorted(otlp) == ["grpc_unavailable", "http"]  # the other OTLP port is there
        reason = f"cannot listen for OTLP/gRPC on 127.0.0.1:{port}"
        assert otlp["grpc_unavailable"].startswith(reason)
        assert (
            "AGENT_TELEMETRY_OTLP_GRPC_PORT to another port, 0, or off" in otlp["grpc_unavailable"]
        )
        human = daemon.cli("status").stdout
        assert f"otlp:         OTLP/HTTP {otlp['http']}; no OTLP/gRPC listener: {reason}" in human
        check = doctor_check(daemon, "otlp_grpc_port")
        assert check["verdict"] == "fail" and reason in check["detail"]
        assert f"otlp_grpc_port = {port + 1}" in check["fix"]
        assert f"AGENT_TELEMETRY_OTLP_GRPC_PORT={port + 1}" in check["fix"]
        assert doctor_check(daemon, "otlp_http_port")["verdict"] == "ok"
    warnings = [line for line in daemon.log().splitlines() if "otlp_listener_unavailable" in line]
    assert len(warnings) == 1 and f'"port": {port}' in warnings[0], warnings
    assert daemon.proc is not None and daemon.proc.poll() is None


def doctor_check(daemon: DaemonProcess, name: str) -> dict[str, Any]:
    result = daemon.cli("doctor", "--json", check=False)
    (check,) = [check for check in json.loads(result.stdout)["checks"] if check["name"] == name]
    return dict(check)


@pytest.mark.parametrize(
    ("peer", "loopback"),
    [
        ("ipv4:127.0.0.1:50000", True),
        ("ipv4:127.3.2.1:1", True),
        ("ipv6:[::1]:50000", True),
        ("ipv6:%5B::1%5D:50000", True),
        ("ipv4:10.0.0.7:50000", False),
        ("ipv6:[2001:db8::1]:50000", False),
        ("ipv6:[::ffff:127.0.0.1]:50000", False),
        ("unix:/tmp/socket", False),
        ("", False),
    ],
)
def test_only_loopback_peers_may_export(peer: str, loopback: bool) -> None:
    assert is_loopback_peer(peer) is loopback
