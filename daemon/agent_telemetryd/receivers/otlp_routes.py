"""The OTLP/HTTP routes (`POST /v1/traces`, `/v1/logs`, `/v1/metrics`), registered lightly.

Decoding OTLP takes the protobuf runtime and the OpenTelemetry message classes, ~3 MB
resident. A daemon whose agents never send OTLP should not carry them, so the routes are
registered here and `otlp_http` (with everything it imports) is loaded by the first
request; the state the receivers share is kept here too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aiohttp import web

from agent_telemetryd.privacy.content import ContentMask

if TYPE_CHECKING:
    from agent_telemetryd.otlp.event_checks import EventChecks

# Resources recorded by this process, by uuid: at most this many, then forgotten (the
# uuid still dedupes one recorded again).
MAX_RESOURCES_REMEMBERED = 1024


@dataclass
class OtlpState:
    """What the OTLP receivers keep between requests; one per daemon, shared by them all."""

    # Content is masked here, before validation, so that its size limit counts what is
    # stored: a 200 KB prompt must not cost the span its place when only its length stays.
    mask: ContentMask = field(default_factory=ContentMask)
    resources_recorded: set[str] = field(default_factory=set)
    # Made by the first request, with the ingestor's limits (`otlp_export.event_checks`).
    checks: EventChecks | None = None

    def recorded(self, uuids: list[str]) -> None:
        if len(self.resources_recorded) + len(uuids) > MAX_RESOURCES_REMEMBERED:
            self.resources_recorded.clear()
        self.resources_recorded.update(uuids)


OTLP_STATE = web.AppKey("otlp_state", OtlpState)
SIGNAL_PATHS = {"/v1/traces": "TRACES", "/v1/logs": "LOGS", "/v1/metrics": "METRICS"}


def add_to(app: web.Application, state: OtlpState | None = None) -> OtlpState:
    """Serve the three OTLP routes on `app` (before it starts); returns the state they keep,
    which another OTLP receiver may share."""
    app[OTLP_STATE] = state if state is not None else OtlpState()
    app.add_routes([web.post(path, _export) for path in SIGNAL_PATHS])
    return app[OTLP_STATE]


async def _export(request: web.Request) -> web.Response:
    from agent_telemetryd.otlp import signals
    from agent_telemetryd.receivers import otlp_http

    signal = getattr(signals, SIGNAL_PATHS[request.match_info.route.resource.canonical])
    return await otlp_http.export(request, signal)
