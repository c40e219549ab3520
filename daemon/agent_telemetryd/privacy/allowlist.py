"""An optional allowlist: events not named are dropped, properties not named are removed."""

from __future__ import annotations

from dataclasses import replace

from agent_telemetryd.events import Event


class Allowlist:
    def __init__(self, events: frozenset[str] | None, properties: frozenset[str] | None) -> None:
        self._events = events
        self._properties = properties

    def __call__(self, event: Event) -> Event | None:
        # Dropping here is not an error: the event is counted as not_allowlisted.
        if self._events is not None and event.event not in self._events:
            return None
        if self._properties is not None and event.properties:
            kept = {k: v for k, v in event.properties.items() if k in self._properties}
            if len(kept) != len(event.properties):
                return replace(event, properties=kept)
        return event
