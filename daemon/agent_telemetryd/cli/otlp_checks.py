"""What `doctor` concludes about the optional OTLP listeners (`otlp_http_port`,
`otlp_grpc_port`): one check for each that is configured.

Pure, as `checks` is: facts in (gathered by `doctor.py`), a `Check` out. A listener the
daemon cannot have does not stop it (it runs its sockets and main port without it), so this
check is where a user learns that exporters sent to that port do not reach the daemon.
"""

from __future__ import annotations

from agent_telemetryd.cli.checks import FAIL, OK, WARN, Check
from agent_telemetryd.otlp.grpc_extra import GRPC_MISSING

# By transport: what it is called, its setting and its variable.
_NAMES = {
    "http": ("OTLP/HTTP", "otlp_http_port", "AGENT_TELEMETRY_OTLP_HTTP_PORT"),
    "grpc": ("OTLP/gRPC", "otlp_grpc_port", "AGENT_TELEMETRY_OTLP_GRPC_PORT"),
}


def otlp_port(
    transport: str,
    configured: int | None,
    daemon_running: bool,
    listening: str | None,
    problem: str | None,
) -> Check:
    """`configured`: the port in this command's config; `listening`: where the running
    daemon listens; `problem`: why it has no such listener (as its status says), or, with
    no daemon running, why it would not (the port taken, the extra missing)."""
    label, setting, variable = _NAMES[transport]
    then = "restart the daemon" if daemon_running else "start the daemon"
    without = "runs without" if daemon_running else "would start without"
    if problem == GRPC_MISSING:
        return Check(
            setting,
            FAIL,
            f"{problem}; the daemon {without} its {label} listener (ingest.sock, api.sock "
            "and its HTTP port are not affected)",
            f"pip install 'agent-telemetry[otlp-grpc]' and {then}, or set {setting} = off",
        )
    if problem is not None:
        return Check(
            setting,
            FAIL,
            f"{problem}; the daemon {without} its {label} listener (ingest.sock, api.sock "
            "and its HTTP port are not affected): exporters sent to that port do not reach "
            "the daemon",
            f"set another port: {_another(setting, variable, configured)}, then {then} and "
            "point those exporters at it"
            + (" (agent-telemetry otel-env prints where)" if transport == "http" else ""),
        )
    if listening is not None:
        return Check(setting, OK, f"{label} listens on {listening}")
    if daemon_running:
        return Check(
            setting,
            WARN,
            f"{setting} is {configured} here, but the running daemon has no {label} "
            "listener: it was started with another config or environment",
            "restart the daemon to apply this one",
        )
    if configured == 0:
        return Check(setting, OK, f"{setting} = 0: the daemon picks a free port at start")
    return Check(setting, OK, f"port {configured} is free for the daemon's {label} listener")


def _another(setting: str, variable: str, port: int | None) -> str:
    """The setting and the variable with a port beside the one that cannot be had; 0 (any
    free port) and off are the other ways out."""
    other = port + 1 if port and port < 65535 else 0
    return (
        f"{setting} = {other} in the config (or {variable}={other}; 0 picks a free one, "
        "off turns it off)"
    )
