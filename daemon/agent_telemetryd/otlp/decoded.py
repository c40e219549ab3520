"""What decoding one OTLP request gives the receiver: checked events, refusals, resources."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.proto.common.v1.common_pb2 import InstrumentationScope
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from agent_telemetryd.events import Event, EventError
from agent_telemetryd.otlp.event_checks import EventChecks
from agent_telemetryd.otlp.values import agent_name, attributes
from agent_telemetryd.privacy.content import ContentMask


class Refused(ValueError):
    """One item that cannot become an event; the message is the reason, fixed text that
    never quotes the item (reasons reach the log and the exporter's answer)."""


@dataclass(frozen=True, slots=True)
class ResourceInfo:
    """An OTLP resource: whose items these are (`service.name` → `agent`) and everything
    else it says about the process. Kept once per source, not copied onto every event."""

    agent: str | None
    attributes: dict[str, Any]
    identity: bytes  # the resource as deterministic protobuf bytes


@dataclass(slots=True)
class Decoded:
    """The events of one request, checked (`EventChecks`) and with their content masked
    when `mask` is given; one reason for each item that could not become one; and the
    resources the items came from."""

    checks: EventChecks
    mask: ContentMask | None = None
    events: list[Event] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    resources: list[ResourceInfo] = field(default_factory=list)
    # When the request came in, Unix ms: the time of an item that carries none.
    received_ms: int = 0
    # The same resources by their bytes: one request may carry thousands.
    _resources_by_identity: dict[bytes, ResourceInfo] = field(
        default_factory=dict, init=False, repr=False
    )
    # Attribute pairs read before in this request, by their bytes (`read_attributes`).
    known_pairs: dict[bytes, tuple[str, Any]] = field(default_factory=dict)

    @property
    def items(self) -> int:
        return len(self.events) + len(self.refused)

    @property
    def content_masked(self) -> bool:
        """The events' content is masked already (the ingestor need not mask it again)."""
        return self.mask is not None

    def add_resource(self, resource: Resource) -> ResourceInfo:
        identity = resource.SerializeToString(deterministic=True)
        known = self._resources_by_identity.get(identity)
        if known is not None:
            return known
        values = attributes(resource.attributes)
        info = ResourceInfo(agent_name(values.get("service.name")), values, identity)
        self.resources.append(info)
        self._resources_by_identity[identity] = info
        return info

    def take(self, build: Callable[..., dict[str, Any]], *args: Any) -> None:
        """Add the event `build(*args)` makes (a wire document, then masked and checked),
        or its refusal: one bad item never costs the others theirs, whatever went wrong
        with it."""
        try:
            self.events.append(self.checks.document(build(*args), self.mask))
        except (Refused, EventError) as reason:
            self.refused.append(str(reason))
        except Exception as error:  # a value no rule foresaw; the type says which
            self.refused.append(f"could not be read ({type(error).__name__})")


def scope_properties(scope: InstrumentationScope) -> dict[str, Any]:
    """The instrumentation library that made the items, under OpenTelemetry's names for it
    outside OTLP."""
    found: dict[str, Any] = {}
    if scope.name:
        found["otel.scope.name"] = scope.name
    if scope.version:
        found["otel.scope.version"] = scope.version
    return found


def wire_event(
    name: str,
    properties: dict[str, Any],
    uuid: str,
    agent: str | None,
    timestamp: str | None,
) -> dict[str, Any]:
    document: dict[str, Any] = {"event": name, "properties": properties, "uuid": uuid}
    if timestamp is not None:
        document["timestamp"] = timestamp
    if agent is not None:
        document["agent"] = agent
    return document
