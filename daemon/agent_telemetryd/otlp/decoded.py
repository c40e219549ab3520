"""What decoding one OTLP request gives the receiver: wire events, refusals, resources."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.proto.common.v1.common_pb2 import InstrumentationScope
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from agent_telemetryd.otlp.values import agent_name, attributes


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
    """The events of one request in the daemon's wire form, one reason for each item that
    could not become one, and the resources the items came from."""

    documents: list[dict[str, Any]] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    resources: list[ResourceInfo] = field(default_factory=list)
    content_masked: bool = False  # the documents' content is masked already

    @property
    def items(self) -> int:
        return len(self.documents) + len(self.refused)

    def add_resource(self, resource: Resource) -> ResourceInfo:
        identity = resource.SerializeToString(deterministic=True)
        for known in self.resources:
            if known.identity == identity:
                return known
        values = attributes(resource.attributes)
        info = ResourceInfo(agent_name(values.get("service.name")), values, identity)
        self.resources.append(info)
        return info

    def take(self, build: Callable[..., dict[str, Any]], *args: Any) -> None:
        """Add the event `build(*args)` makes, or its refusal: one bad item never costs the
        others theirs, whatever went wrong with it."""
        try:
            self.documents.append(build(*args))
        except Refused as reason:
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
