"""Fire-and-forget events from an agent to the local agent-telemetry daemon.

    from agent_telemetry import span, track
    track("agent.run.completed", {"duration_ms": 812})
    with span("tool.call", {"tool": "search"}) as s:
        s.set("results", 3)

`track()` never raises and never blocks: events go to a background thread that writes them
to the daemon's `ingest.sock`. While the daemon is down or not reading they are spooled to
a private folder it takes them from later; only what the spool cannot hold, or bad input,
is dropped (and counted in `stats()`). `AGENT_TELEMETRY_DISABLED=1` turns every call into a
no-op. Standard library only.
"""

from __future__ import annotations

from agent_telemetry._client import Client
from agent_telemetry._paths import ingest_socket_path, runtime_dir
from agent_telemetry._span import Span, current_span, make_span
from agent_telemetry._wire import encode_event, uuid7

__all__ = [
    "Span",
    "configure",
    "current_span",
    "encode_event",
    "flush",
    "ingest_socket_path",
    "runtime_dir",
    "span",
    "stats",
    "track",
    "uuid7",
]

_client = Client()

track = _client.track
flush = _client.flush
stats = _client.stats
configure = _client.configure
span = make_span(_client)
