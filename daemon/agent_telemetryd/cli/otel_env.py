"""otel-env: the environment that points OpenTelemetry exporters at this daemon."""

from __future__ import annotations

import click

from agent_telemetryd.cli.common import daemon_pid, get_config, read_status
from agent_telemetryd.config import Config

SHELLS = ("sh", "bash", "zsh", "fish", "powershell")


def endpoint(config: Config) -> str:
    """The base URL OTLP is sent to: the OTLP-only port when `otlp_http_port` is set (what
    it is for), else the daemon's main port. The port it listens on when it runs (a port of
    0 is picked at start), else the configured one."""
    if daemon_pid(config) is not None:
        report = read_status(config)
        otlp = report.get("otlp") or {}
        url = otlp.get("http") or report["paths"]["http"]
        missing = otlp.get("http_unavailable")
        if missing and not url:
            raise click.ClickException(f"the daemon has no OTLP/HTTP listener: {missing}")
        if not url:
            raise click.ClickException(_PORTS_OFF)
        if missing:
            # The main port takes OTLP too: exporters reach the daemon there meanwhile.
            click.echo(f"# no OTLP-only port ({missing}); using the daemon's HTTP port", err=True)
        return str(url)
    port, setting = config.otlp_http_port, "otlp_http_port"
    if port is None:
        port, setting = config.http_port, "http_port"
    if port is None:
        raise click.ClickException(_PORTS_OFF)
    if port == 0:
        raise click.ClickException(
            f"{setting} is 0, so the daemon picks its port when it starts;"
            " start it first (agent-telemetry daemon, or agent-telemetry service install)"
        )
    host = f"[{config.http_host}]" if ":" in config.http_host else config.http_host
    return f"http://{host}:{port}"


_PORTS_OFF = (
    "the daemon's HTTP port is off (http_port) and it has no OTLP-only port (otlp_http_port),"
    " so nothing takes OTLP/HTTP; set AGENT_TELEMETRY_HTTP_PORT (default 7468) or"
    " AGENT_TELEMETRY_OTLP_HTTP_PORT (e.g. 4318)"
)


def variables(url: str, capture_content: bool) -> list[tuple[str, str | None]]:
    """(name, value) pairs; a value of None makes the name a comment line."""
    return [
        ("OpenTelemetry SDKs and exporters, any language", None),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", url),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ("OTEL_TRACES_EXPORTER", "otlp"),
        ("OTEL_LOGS_EXPORTER", "otlp"),
        ("OTEL_METRICS_EXPORTER", "otlp"),
        ("Claude Code (reads the OTEL_ variables above)", None),
        ("CLAUDE_CODE_ENABLE_TELEMETRY", "1"),
        ("its traces are a beta: add CLAUDE_CODE_ENHANCED_TELEMETRY_BETA=1 for them", None),
        ("Gemini CLI", None),
        ("GEMINI_TELEMETRY_ENABLED", "true"),
        ("GEMINI_TELEMETRY_TARGET", "local"),
        ("GEMINI_TELEMETRY_OTLP_ENDPOINT", url),
        ("GEMINI_TELEMETRY_OTLP_PROTOCOL", "http"),
        # Prompts are not stored here unless capture_content is on: then do not send them.
        ("GEMINI_TELEMETRY_LOG_PROMPTS", "true" if capture_content else "false"),
        ("Codex reads ~/.codex/config.toml instead; add there:", None),
        ("[otel]", None),
        *((line, None) for line in _codex_exporters(url)),
        (f"log_user_prompt = {'true' if capture_content else 'false'}", None),
    ]


def _codex_exporters(url: str) -> list[str]:
    return [
        f'{key} = {{ otlp-http = {{ endpoint = "{url}/v1/{signal}", protocol = "binary" }} }}'
        for key, signal in (
            ("exporter", "logs"),
            ("trace_exporter", "traces"),
            ("metrics_exporter", "metrics"),
        )
    ]


def render(pairs: list[tuple[str, str | None]], shell: str) -> str:
    lines = []
    for name, value in pairs:
        if value is None:
            lines.append(f"# {name}")
        elif shell == "fish":
            escaped = value.replace("\\", "\\\\").replace("'", "\\'")
            lines.append(f"set -gx {name} '{escaped}'")
        elif shell == "powershell":
            escaped = value.replace("'", "''")
            lines.append(f"$env:{name} = '{escaped}'")
        else:  # POSIX sh, which bash and zsh read too
            escaped = value.replace("'", "'\\''")
            lines.append(f"export {name}='{escaped}'")
    return "\n".join(lines)


@click.command("otel-env")
@click.option(
    "--shell",
    type=click.Choice(SHELLS),
    default="sh",
    show_default=True,
    help="Syntax to print (bash and zsh get the sh form).",
)
def otel_env(shell: str) -> None:
    """Print the environment that sends OpenTelemetry to this daemon.

    For any OpenTelemetry SDK (endpoint, protocol, exporters) and for coding agents with
    built-in export (Claude Code, Gemini CLI; Codex as a config comment). The endpoint is
    the OTLP-only port when otlp_http_port is set, else the daemon's HTTP port: the port
    it listens on when it runs, else the configured one.

    \b
    Example:
        eval "$(agent-telemetry otel-env)"
        agent-telemetry otel-env --shell fish | source
        agent-telemetry otel-env --shell powershell | Invoke-Expression
    """
    config = get_config()
    click.echo(render(variables(endpoint(config), config.capture_content), shell))
