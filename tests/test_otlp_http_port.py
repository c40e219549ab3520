"""The optional second OTLP/HTTP listener (`otlp_http_port`, 4318 in OTLP's own terms):
an exporter left at its default lands there; the listener serves OTLP and nothing else,
behind the same Host/Origin guard; it is off unless asked for."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.resources import Resource

from agent_telemetryd.config import ConfigError, load_config
from agent_telemetryd.paths import resolve_paths
from tests.daemon_process import DaemonProcess
from tests.otlp_messages import span, traces
from tests.test_daemon_ingest import send_lines, wait_for_rows
from tests.test_otlp_receiver import (
    PROTOBUF,
    assert_balanced,
    http_exporters,
    otlp_rows,
    post,
    tracer_provider,
)

OTLP_PORT_ON = {"AGENT_TELEMETRY_OTLP_HTTP_PORT": "0", "AGENT_TELEMETRY_RATE_LIMIT": "off"}


def otlp_url(daemon: DaemonProcess) -> str:
    url = daemon.status()["otlp"]["http"]
    assert url.startswith("http://127.0.0.1:") and url != daemon.http_url()
    return str(url)


def get(url: str, headers: dict[str, str] | None = None) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {})) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def test_an_exporter_lands_its_spans_on_the_otlp_port(daemon_factory: Any) -> None:
    daemon = daemon_factory(OTLP_PORT_ON)
    url = otlp_url(daemon)
    resource = Resource.create({"service.name": "port-4318-agent"})
    with tracer_provider(http_exporters(url), resource) as tracing:
        tracer = tracing.get_tracer("t")
        with tracer.start_as_current_span("outer"), tracer.start_as_current_span("inner"):
            pass
    rows = {row["event"]: row for row in otlp_rows(daemon)}
    assert sorted(rows) == ["inner", "otel.resource", "outer"]
    assert rows["inner"]["parent_span_id"] == rows["outer"]["span_id"]
    assert rows["inner"]["agent"] == "port-4318-agent"
    assert_balanced(daemon)


def test_the_otlp_port_serves_only_otlp_and_health(daemon_factory: Any) -> None:
    daemon = daemon_factory(OTLP_PORT_ON)
    url = otlp_url(daemon)
    assert get(f"{url}/healthz") == 200
    assert get(f"{url}/dashboard") == 404
    status, _, _ = post(f"{url}/v1/events", b'{"event": "shim.event"}', "application/json")
    assert status == 404
    assert get(f"{daemon.http_url()}/dashboard") != 404  # the main port keeps its routes


def test_the_otlp_port_refuses_a_foreign_origin_or_host(daemon_factory: Any) -> None:
    daemon = daemon_factory(OTLP_PORT_ON)
    url = otlp_url(daemon)
    body = traces(span()).SerializeToString()
    for headers in ({"Origin": "https://evil.example"}, {"Host": "evil.example"}):
        status, _, answer = post(f"{url}/v1/traces", body, PROTOBUF, headers=headers)
        assert status == 403, answer
        assert "error" in json.loads(answer)
    # Its own origin is not foreign; the main port's origin is not its own.
    own, _, _ = post(f"{url}/v1/traces", body, PROTOBUF, headers={"Origin": url})
    main, _, _ = post(f"{url}/v1/traces", body, PROTOBUF, headers={"Origin": daemon.http_url()})
    assert (own, main) == (200, 403)
    assert len(otlp_rows(daemon)) == 2  # the span and its resource, once


def test_it_is_off_by_default(daemon: DaemonProcess) -> None:
    assert daemon.status()["otlp"] == {}


def log_records(daemon: DaemonProcess, event: str) -> list[dict[str, Any]]:
    records = [json.loads(line) for line in daemon.log().splitlines() if line.strip()]
    return [record for record in records if record["event"] == event]


def test_a_taken_otlp_port_leaves_the_daemon_running_without_that_listener(
    daemon_factory: Any,
) -> None:
    """A collector already on the port used to stop the start (exit 3), and with it
    ingest.sock, api.sock and the main port: the shims' events waited in the spool. Now
    only the OTLP listener is missing, and the log, status and doctor say why."""
    with socket.socket() as collector:  # a real listening socket, as a collector holds 4318
        collector.bind(("127.0.0.1", 0))
        collector.listen()
        port = collector.getsockname()[1]
        daemon = daemon_factory({**OTLP_PORT_ON, "AGENT_TELEMETRY_OTLP_HTTP_PORT": str(port)})
        send_lines(daemon.ingest_socket, b'{"event": "over.the.socket"}\n')
        wait_for_rows(daemon, 1)
        assert [row["event"] for row in daemon.export()] == ["over.the.socket"]
        reason = f"cannot listen for OTLP/HTTP on 127.0.0.1:{port}: Address already in use"
        otlp = daemon.status()["otlp"]
        assert list(otlp) == ["http_unavailable"]
        assert otlp["http_unavailable"].startswith(reason)
        assert "set AGENT_TELEMETRY_OTLP_HTTP_PORT to another port, 0, or off" in str(otlp)
        assert get(f"{daemon.http_url()}/healthz") == 200  # the main port, OTLP's routes too
        assert f"otlp:         no OTLP/HTTP listener: {reason}" in daemon.cli("status").stdout

        doctor = daemon.cli("doctor", "--json", check=False)
        assert doctor.returncode == 1
        checks = json.loads(doctor.stdout)["checks"]
        (check,) = [check for check in checks if check["name"] == "otlp_http_port"]
        assert check["verdict"] == "fail"
        assert (
            reason in check["detail"] and "runs without its OTLP/HTTP listener" in check["detail"]
        )
        assert f"otlp_http_port = {port + 1}" in check["fix"]
        assert f"AGENT_TELEMETRY_OTLP_HTTP_PORT={port + 1}" in check["fix"]
        assert "0 picks a free one, off turns it off" in check["fix"]

        # otel-env points exporters at the main port meanwhile, which takes OTLP too.
        env = daemon.cli("otel-env")
        assert f"OTEL_EXPORTER_OTLP_ENDPOINT='{daemon.http_url()}'" in env.stdout
        assert f"no OTLP-only port ({reason}" in env.stderr

        # A reload keeps what it found: the listeners are opened at start only.
        assert daemon.cli("reload", "--json").returncode == 0
        assert daemon.status()["otlp"] == otlp
    (warning,) = log_records(daemon, "otlp_listener_unavailable")
    assert (warning["level"], warning["port"], warning["listener"]) == (
        "warning",
        port,
        "otlp_http",
    )
    assert warning["reason"] == otlp["http_unavailable"]
    assert "over.the.socket" not in daemon.log()  # a port's trouble, no event in it
    assert daemon.proc is not None and daemon.proc.poll() is None


def test_the_otlp_ports_are_settings_off_by_default(tmp_path: Path) -> None:
    environ = {"AGENT_TELEMETRY_HOME": str(tmp_path)}
    paths = resolve_paths(environ)
    default = load_config(environ, paths)
    assert (default.otlp_http_port, default.otlp_grpc_port) == (None, None)
    paths.config_file.parent.mkdir(parents=True, exist_ok=True)
    paths.config_file.write_text("otlp_http_port = 4318\notlp_grpc_port = 4317\n")
    configured = load_config(environ, paths)
    assert (configured.otlp_http_port, configured.otlp_grpc_port) == (4318, 4317)
    assert configured.source_of("otlp_grpc_port") == "config"
    overridden = load_config({**environ, "AGENT_TELEMETRY_OTLP_GRPC_PORT": "off"}, paths)
    assert overridden.otlp_grpc_port is None
    with pytest.raises(ConfigError, match="otlp_http_port"):
        paths.config_file.write_text("otlp_http_port = 70000\n")
        load_config(environ, paths)
