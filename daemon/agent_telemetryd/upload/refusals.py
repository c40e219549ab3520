"""Events the backend refused one by one, held until it shows it takes anything. Pure.

A backend that refuses *every* event it is sent must not quarantine the whole backlog:
a broken deploy answering 400, a body limit (its own or a proxy's in front of it)
answering 413 to any request however small, a 2xx whose `rejected` list names every
event ("schema version unsupported"). Each looks, event by event, like a bad event. So
what a flush finds refused before the backend accepted anything in it is held, still
pending: once the backend accepts something, the refusals are about those events and
they are quarantined. A 413 for one event is treated the same way: it says that event is
too large only when the backend takes others (a smaller batch-mate, a later batch); when
its batch-mates were refused alone too, the limit refuses everything. A second batch
refused whole with nothing accepted ends the flush, quarantining nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from agent_telemetryd.outbound import OutboundBatch
from agent_telemetryd.upload.ending import FlushEndedError

# Batches refused whole, in a row and with nothing accepted, that end the flush.
REFUSED_BATCHES_TO_END = 2


@dataclass(frozen=True, slots=True)
class Refusal:
    """Events the backend refused alone, with its reason (which may quote its text)."""

    batch: OutboundBatch
    reason: str
    too_large: bool = False  # a 413: the event alone was too large for the backend

    @property
    def why(self) -> str:
        """A fixed classification, for the log."""
        return "too large" if self.too_large else "refused"


@dataclass
class Refusals:
    held: list[Refusal] = field(default_factory=list)
    batches: int = 0  # batches refused whole, in a row, with nothing accepted

    def hold(self, refusals: list[Refusal]) -> None:
        self.held.extend(refusals)
        self.batches += 1

    @property
    def refuses_everything(self) -> bool:
        return self.batches >= REFUSED_BATCHES_TO_END

    def release(self) -> list[Refusal]:
        held, self.held, self.batches = self.held, [], 0
        return held

    def ended(self) -> FlushEndedError:
        events = sum(len(refusal.batch) for refusal in self.held)
        reason = self.held[-1].reason if self.held else "no reason given"
        noun = "event" if events == 1 else "events"
        hint = ""
        if self.held and all(refusal.too_large for refusal in self.held):
            hint = (
                "; even one event alone is too large for it: a limit on the request size "
                "(the backend's, or a proxy's in front of it) is set too low"
            )
        return FlushEndedError(
            f"the backend refused every event it was sent ({events} {noun} in "
            f"{self.batches} {'batch' if self.batches == 1 else 'batches'}; {reason}){hint}; "
            "nothing was quarantined and the events stay pending",
            "refuses every event",
        )
