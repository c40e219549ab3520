"""What an arrival came to, for the receiver that handed it over (`Ingestor`'s answers),
and the counts kept in memory for what never reaches the buffer."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field

from agent_telemetryd.arrival_rows import Rejection
from agent_telemetryd.store.writer import WriteResult


@dataclass(slots=True)
class Outcome:
    rejected: list[Rejection]
    pending: asyncio.Future[WriteResult] | None  # resolves after commit, when asked for
    kept: int
    # The document index of each row handed to the writer, in order: the writer names
    # the rows it refused by position, and a client is answered by document index.
    row_documents: list[int] = field(default_factory=list)

    def documents_of(self, rows: Iterable[int]) -> list[int]:
        """Document indices of rows named by their position in the write."""
        return [self.row_documents[row] for row in rows]

    def renumbered(self, positions: list[int]) -> Outcome:
        """The same outcome for a receiver that handed over only some of its items:
        `positions[i]` is where document i was among all of them."""
        return Outcome(
            [Rejection(positions[r.index], r.reason) for r in self.rejected],
            self.pending,
            self.kept,
            [positions[index] for index in self.row_documents],
        )


class Counters:
    """Counts kept in memory for what never reaches the buffer (e.g. mode off)."""

    def __init__(self) -> None:
        self.values: dict[str, int] = {}

    def add(self, name: str, amount: int = 1) -> None:
        self.values[name] = self.values.get(name, 0) + amount
