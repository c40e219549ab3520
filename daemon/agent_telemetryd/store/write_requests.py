"""What the writer's queue holds: write requests, jobs, file replacements, and their results."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from agent_telemetryd.store.buffer_file import Replaced
from agent_telemetryd.store.rows import EventRow


@dataclass(frozen=True, slots=True)
class WriteResult:
    inserted: int
    duplicates: int
    # Positions (in the request's rows) of the rows the full buffer could not take.
    refused_rows: tuple[int, ...] = ()

    @property
    def refused(self) -> int:
        return len(self.refused_rows)


@dataclass(slots=True)
class WriteRequest:
    rows: list[EventRow]
    counters: dict[str, int] = field(default_factory=dict)
    ack: asyncio.Future[WriteResult] | None = None
    # `meta` rows written in the same transaction (a spool file's "taken" mark).
    meta: dict[str, str] = field(default_factory=dict)
    # Gathered over a read turn already: not held back for company (store/writer.py).
    gathered: bool = False


@dataclass(slots=True)
class Job:
    fn: Callable[[sqlite3.Connection], Any]
    done: asyncio.Future[Any]
    transaction: bool
    frees_space: bool = False


@dataclass(slots=True)
class ReplaceRequest:
    kind: str  # CLEAR or HEAL
    reason: str
    done: asyncio.Future[Replaced | None]
    generation: int | None = None  # HEAL: only if the file is still this one


STOP = object()
# Called on the event loop before the file is replaced: whatever else holds a connection
# to it (the reader thread, the checkpointer) lets go.
BeforeReplace = Callable[[], Awaitable[None]]


class StoreFullError(RuntimeError):
    pass
