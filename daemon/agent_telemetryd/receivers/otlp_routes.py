"""The OTLP/HTTP routes (`POST /v1/traces`, `/v1/logs`, `/v1/metrics`), registered lightly.

Decoding OTLP takes the protobuf runtime and the OpenTelemetry message classes, ~3 MB
resident. A daemon whose agents never send OTLP should not carry them, so the routes are
registered here and `otlp_http` (with everything it imports) is loaded by the first
request. The state the receivers share (otlp_state.py) is put on each app that serves them.
"""

from __future__ import annotations

from aiohttp import web

from agent_telemetryd.receivers.otlp_state import OtlpState

OTLP_STATE = web.AppKey("otlp_state", OtlpState)
SIGNAL_PATHS = {"/v1/traces": "TRACES", "/v1/logs": "LOGS", "/v1/metrics": "METRICS"}


def add_to(app: web.Application, state: OtlpState) -> None:
    """Serve the three OTLP routes on `app` (before it starts), keeping `state`, which the
    other OTLP receivers share."""
    app[OTLP_STATE] = state
    app.add_routes([web.post(path, _export) for path in SIGNAL_PATHS])


async def _export(request: web.Request) -> web.Response:
    from agent_telemetryd.otlp import signals
    from agent_telemetryd.receivers import otlp_http

    signal = getattr(signals, SIGNAL_PATHS[request.match_info.route.resource.canonical])
    return await otlp_http.export(request, signal)
