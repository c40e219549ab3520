"""A resource (the process an exporter speaks for) as one event of its source.

OTLP sends the resource with every batch; copying its attributes onto every span would
multiply them by thousands. It is recorded once instead: an `otel.resource` event from the
same agent, whose properties are the resource's attributes and whose uuid is derived from
them, so a resource the buffer already holds is a duplicate, not a second row.
"""

from __future__ import annotations

from typing import Any

from agent_telemetryd.otlp.decoded import ResourceInfo, wire_event
from agent_telemetryd.otlp.identity import identity_uuid

RESOURCE_EVENT = "otel.resource"


def resource_event(resource: ResourceInfo) -> dict[str, Any]:
    agent = (resource.agent or "").encode()
    return wire_event(
        RESOURCE_EVENT,
        dict(resource.attributes),
        identity_uuid(0, b"resource", agent, resource.identity),
        resource.agent,
        None,
    )
