"""An optional allowlist: events not named are dropped, properties not named are removed."""

from __future__ import annotations

from dataclasses import replace

from agent_telemetryd.analytics.vocabulary import AGENT_SYNONYMS, SYNONYMS
from agent_telemetryd.events import Event


def _with_synonyms(allowed: frozenset[str]) -> frozenset[str]:
    """`allowed` and every other spelling stored under one of its names. The allowlist
    reads names as sent, before the vocabulary renames `model` to `gen_ai.request.model`:
    a list written with the names the buffer shows must keep what a shim sends as `model`.
    """
    pairs = [*SYNONYMS.items()]
    for names in AGENT_SYNONYMS.values():
        pairs.extend(names.items())
    return allowed | {other for other, stored in pairs if stored in allowed}


class Allowlist:
    def __init__(self, events: frozenset[str] | None, properties: frozenset[str] | None) -> None:
        self._events = events
        self._properties = _with_synonyms(properties) if properties is not None else None

    def __call__(self, event: Event) -> Event | None:
        # Dropping here is not an error: the event is counted as not_allowlisted.
        if self._events is not None and event.event not in self._events:
            return None
        if self._properties is not None and event.properties:
            kept = {k: v for k, v in event.properties.items() if k in self._properties}
            if len(kept) != len(event.properties):
                return replace(event, properties=kept)
        return event
