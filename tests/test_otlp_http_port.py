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


def test_it_is_off_by_default_and_a_taken_port_is_a_clear_startup_failure(
    daemon: DaemonProcess, daemon_factory: Any
) -> None:
    assert daemon.status()["otlp"] == {}
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        blocked = daemon_factory({"AGENT_TELEMETRY_OTLP_HTTP_PORT": port}, start=False)
        blocked.start(wait=False)
        assert blocked.proc is not None
        assert blocked.proc.wait(timeout=30) == 3
    assert f"cannot listen for OTLP/HTTP on 127.0.0.1:{port}" in blocked.log()
    assert "AGENT_TELEMETRY_OTLP_HTTP_PORT" in blocked.log()


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
