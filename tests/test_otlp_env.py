"""`agent-telemetry otel-env`: its output, sourced in a real shell, is all an OpenTelemetry
program needs to land its data in this daemon."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from tests.daemon_process import DaemonProcess
from tests.test_otlp_receiver import assert_balanced, otlp_rows

# An OpenTelemetry-instrumented program that knows nothing of this daemon: the endpoint
# comes from the environment alone.
EXPORTING_PROGRAM = textwrap.dedent(
    """
    import os
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    assert os.environ["OTEL_EXPORTER_OTLP_PROTOCOL"] == "http/protobuf"
    resource = Resource.create({"service.name": "env-agent"})
    tracing = TracerProvider(resource=resource)
    tracing.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    logging = LoggerProvider(resource=resource)
    logging.add_log_record_processor(BatchLogRecordProcessor(OTLPLogExporter()))
    tracer = tracing.get_tracer("env")
    with tracer.start_as_current_span("run"):
        with tracer.start_as_current_span("step"):
            logging.get_logger("env").emit(event_name="agent.step.done", body="done")
    tracing.shutdown()
    logging.shutdown()
    """
)


def without_otel(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if not k.startswith(("OTEL_", "GEMINI_TELEMETRY_"))}


def test_sourced_in_sh_it_makes_an_otel_program_land_its_spans_here(
    daemon: DaemonProcess, tmp_path: Path
) -> None:
    env_file = tmp_path / "otel.env"
    env_file.write_text(daemon.cli("otel-env").stdout)
    program = tmp_path / "agent.py"
    program.write_text(EXPORTING_PROGRAM)
    result = subprocess.run(
        ["sh", "-c", '. "$1" && exec "$2" "$3"', "sh", str(env_file), sys.executable, str(program)],
        env=without_otel(daemon.env),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    rows = {row["event"]: row for row in otlp_rows(daemon)}
    assert sorted(rows) == ["agent.step.done", "otel.resource", "run", "step"]
    assert {row["agent"] for row in rows.values()} == {"env-agent"}
    assert rows["step"]["parent_span_id"] == rows["run"]["span_id"]
    assert assert_balanced(daemon)["rejected"] == 0


def test_the_endpoint_is_the_running_daemons_port_else_the_configured_one(
    daemon: DaemonProcess, daemon_factory: Any
) -> None:
    running = daemon.cli("otel-env").stdout
    assert f"export OTEL_EXPORTER_OTLP_ENDPOINT='{daemon.http_url()}'" in running
    assert f"export GEMINI_TELEMETRY_OTLP_ENDPOINT='{daemon.http_url()}'" in running

    stopped = daemon_factory({"AGENT_TELEMETRY_HTTP_PORT": "7999"}, start=False)
    configured = stopped.cli("otel-env").stdout
    assert "export OTEL_EXPORTER_OTLP_ENDPOINT='http://127.0.0.1:7999'" in configured
    assert '"http://127.0.0.1:7999/v1/logs"' in configured  # the Codex comment


def test_without_a_known_port_it_says_why_in_one_line(daemon_factory: Any) -> None:
    for port, words in (("off", "HTTP port is off"), ("0", "start it first")):
        stopped = daemon_factory({"AGENT_TELEMETRY_HTTP_PORT": port}, start=False)
        result = stopped.cli("otel-env", check=False)
        assert result.returncode == 1
        assert words in result.stderr and "Traceback" not in result.stderr


def test_every_variable_an_agent_documents_is_there(daemon_factory: Any) -> None:
    stopped = daemon_factory({"AGENT_TELEMETRY_HTTP_PORT": "7999"}, start=False)
    lines = stopped.cli("otel-env").stdout.splitlines()
    for expected in (
        "export OTEL_EXPORTER_OTLP_PROTOCOL='http/protobuf'",
        "export OTEL_TRACES_EXPORTER='otlp'",
        "export OTEL_LOGS_EXPORTER='otlp'",
        "export OTEL_METRICS_EXPORTER='otlp'",
        "export CLAUDE_CODE_ENABLE_TELEMETRY='1'",
        "export GEMINI_TELEMETRY_ENABLED='true'",
        "export GEMINI_TELEMETRY_OTLP_PROTOCOL='http'",
        "export GEMINI_TELEMETRY_LOG_PROMPTS='false'",  # content is off: do not send it
        "# log_user_prompt = false",
    ):
        assert expected in lines
    assert all(line.startswith(("export ", "# ")) for line in lines)
    kept = daemon_factory(
        {"AGENT_TELEMETRY_HTTP_PORT": "7999", "AGENT_TELEMETRY_CAPTURE_CONTENT": "1"}, start=False
    )
    assert "export GEMINI_TELEMETRY_LOG_PROMPTS='true'" in kept.cli("otel-env").stdout


def test_fish_and_powershell_get_their_own_syntax(daemon_factory: Any) -> None:
    stopped = daemon_factory({"AGENT_TELEMETRY_HTTP_PORT": "7999"}, start=False)
    fish = stopped.cli("otel-env", "--shell", "fish").stdout.splitlines()
    assert "set -gx OTEL_EXPORTER_OTLP_ENDPOINT 'http://127.0.0.1:7999'" in fish
    assert all(line.startswith(("set -gx ", "# ")) for line in fish)
    powershell = stopped.cli("otel-env", "--shell", "powershell").stdout.splitlines()
    assert "$env:OTEL_EXPORTER_OTLP_ENDPOINT = 'http://127.0.0.1:7999'" in powershell
    assert "$env:CLAUDE_CODE_ENABLE_TELEMETRY = '1'" in powershell
    assert all(line.startswith(("$env:", "# ")) for line in powershell)


def test_bash_and_zsh_get_the_sh_form(daemon_factory: Any) -> None:
    stopped = daemon_factory({"AGENT_TELEMETRY_HTTP_PORT": "7999"}, start=False)
    posix = stopped.cli("otel-env", "--shell", "sh").stdout
    assert stopped.cli("otel-env", "--shell", "bash").stdout == posix
    assert stopped.cli("otel-env", "--shell", "zsh").stdout == posix


def test_with_the_http_port_off_the_otlp_port_is_the_endpoint(daemon_factory: Any) -> None:
    ports = {"AGENT_TELEMETRY_HTTP_PORT": "off", "AGENT_TELEMETRY_OTLP_HTTP_PORT": "14318"}
    stopped = daemon_factory(ports, start=False)
    configured = stopped.cli("otel-env").stdout
    assert "export OTEL_EXPORTER_OTLP_ENDPOINT='http://127.0.0.1:14318'" in configured
    # Running, with a port of its own picked: the OTLP-only one is preferred.
    running = daemon_factory({"AGENT_TELEMETRY_OTLP_HTTP_PORT": "0"})
    otlp_url = running.api_status()["otlp"]["http"]
    assert otlp_url != running.http_url()
    out = running.cli("otel-env").stdout
    assert f"export OTEL_EXPORTER_OTLP_ENDPOINT='{otlp_url}'" in out


def test_the_sh_form_survives_a_strict_shell(daemon_factory: Any, tmp_path: Path) -> None:
    stopped = daemon_factory({"AGENT_TELEMETRY_HTTP_PORT": "7999"}, start=False)
    script = stopped.cli("otel-env").stdout + '\nprintf %s "$OTEL_EXPORTER_OTLP_ENDPOINT"\n'
    result = subprocess.run(
        ["sh", "-euc", script], env={"PATH": os.environ["PATH"]}, capture_output=True, text=True
    )
    assert (result.returncode, result.stdout) == (0, "http://127.0.0.1:7999"), result.stderr
