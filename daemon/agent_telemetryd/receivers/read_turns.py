"""ingest.sock's connections read on one shared turn while agents are sending.

The shims write one event per send when events come one at a time, so at 10,000 events/s
from 4 agents a connection read whenever it was readable woke the loop ~10,000 times a
second, and each read became its own group commit. So a connection that was just read,
and had sent something less than READ_INTERVAL before, is read again on the next turn,
READ_INTERVAL later, and takes what came meanwhile in one go. A read after a quiet spell
is a lone one: the connection stays with its transport, since a turn would only find it
empty and cost a timer, two poller changes and a failed read for nothing. Unless it
sends every few tens of ms and others send too: a lone read that came less than KEEP_FOR
after the connection's last one joins the turns when a turn is pending or another
connection's lone read came less than a turn before, and a connection found empty on a
turn stays on them while it sent something less than KEEP_FOR before. Four agents at 25
events/s each are then read together on the turns, a wake-up for all of them, instead of
each line waking the daemon by itself; an agent alone, or agents seconds apart, are read
as lone ones.
A read that brought BUSY_READ_BYTES or more found a sender blocked on a full socket buffer
(a burst): the next turn then comes BUSY_INTERVAL later instead, so one busy agent is not
held to a socket buffer a turn.

A connection waiting for its turn is out of the event loop's poller (its transport is
paused), and on the turn it is read here directly, until the kernel has nothing more
(EAGAIN), with no poller change: taking it out and putting it back on every turn, for the
poller to report what the turn already knows is there, cost more than the reading itself
(an `epoll_ctl` pair, an `epoll_wait` result and a callback per connection per turn). One
that has nothing on its turn goes back to the poller (`resume_reading()`), so an idle
daemon has no turn pending and never wakes. End of stream and read errors are left to
the transport too: given back, its own read meets the same end (a stream's EOF is
sticky) and runs the protocol's `eof_received` / `connection_lost` exactly as when no
turn is involved.

What a turn reads from all its connections goes on to the ingestor together when the
turn ends (a `TurnBatch`, turn_lines.py), not read by read.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from typing import Protocol

# How long a connection that was just read waits for its next read. Every 20 ms it is
# ~50 lines a read at 10,000 events/s from 4 agents, and one commit per turn. The turn
# trades CPU for latency, and a turn's fixed costs run cold each time (its code and data
# are out of the caches after 20 ms of other work): at 10,000 events/s, 15 ms turns cost
# 13.6-14.1% of a core with send -> commit p99 22.5 ms, 20 ms 12.7-13.1% with p99 28 ms,
# 25 ms 11.8-12.9% with p99 32-33 ms; at 1,000 events/s 4.5-4.9%, 3.7-3.8%, 4.3-4.4%
# (docs/performance.md). 20 ms keeps p99 near half the 50 ms it must stay under, and at
# 28.5-30 ms with a busy loop on one of the two cores.
READ_INTERVAL = 0.020
# Events waiting for the writer above which ingest.sock is not read (~650 bytes each).
MAX_QUEUED_EVENTS = 10_000
# One read's size: what asyncio's own socket transport reads at a time, far more than a
# turn brings at a steady rate, so a read that fills it means more is waiting.
READ_BYTES = 256 * 1024
# Reads of one connection in one turn before the others get theirs: a sender faster than
# the daemon gets READ_BYTES * this a turn, and the rest on the next.
READS_PER_TURN = 4
# A turn that read this much from one connection found a sender the socket's buffer holds
# back (a Unix socket buffers ~200 KB of large writes, far fewer bytes of one-line writes),
# so the next turn comes BUSY_INTERVAL later, not READ_INTERVAL: waiting longer only keeps
# that sender blocked. One agent at 10,000 events/s sends ~40 KB a turn; at a steady rate
# turns stay long.
BUSY_READ_BYTES = 64 * 1024
BUSY_INTERVAL = 0.005
# How long a connection found empty on a turn stays on the turns after its last data: two
# and a half turns, so an agent sending every 25-50 ms is still there for its next line.
KEEP_FOR = 0.050


class TurnReader(Protocol):
    """What a turn hands the bytes it read to: the connection's protocol."""

    def data_received(self, data: bytes) -> None: ...


class TurnBatch(Protocol):
    """Where the readers keep what they made of a turn's reads until the turn ends, to
    hand it on at once (turn_lines.py)."""

    # Lines (events) kept and not handed on yet: counted as waiting for the writer.
    waiting: int

    def begin(self) -> None: ...

    def end(self) -> None: ...


class ReadTurns:
    """Reads every ingest connection that had data on one shared turn (see the module's
    docstring); reads none of them while the writer is behind. With a `batch`, the turn's
    reads are handed on together when it ends."""

    def __init__(
        self,
        queued_events: Callable[[], int],
        *,
        interval: float = READ_INTERVAL,
        busy_interval: float = BUSY_INTERVAL,
        keep_for: float = KEEP_FOR,
        max_queued: int = MAX_QUEUED_EVENTS,
        batch: TurnBatch | None = None,
    ) -> None:
        self._queued_events = queued_events
        self._batch = batch
        self._interval = interval
        self._busy_interval = busy_interval
        self._max_queued = max_queued
        # Turns as long as the window would keep a quiet connection out of the poller for a
        # whole turn: none is kept then.
        self._keep_for = keep_for if interval < keep_for else 0.0
        # Each held connection with the loop time it last had data.
        self._held: list[tuple[asyncio.Transport, int, TurnReader, float]] = []
        self._turn: asyncio.TimerHandle | None = None
        self._last_lone = float("-inf")  # when the last lone read came, from any connection

    def hold(
        self,
        transport: asyncio.Transport,
        fd: int,
        reader: TurnReader,
        came: int = 0,
        quiet: float = 0.0,
    ) -> None:
        """Take `transport` (its socket's descriptor `fd`) out of the poller and read it on
        the next turn, handing what comes to `reader`; `came` is what its transport just
        read (BUSY_READ_BYTES or more brings the next turn forward), `quiet` how long the
        connection had been silent before it. Nothing happens if it is held already (the
        turn's own reads reach its protocol through here too), or when the read was a lone
        one (less than BUSY_READ_BYTES after a quiet spell of a turn's interval or more),
        unless the connection had sent less than KEEP_FOR before and another is sending
        too (a turn is pending, or another lone read came less than an interval before)."""
        if not transport.is_reading():
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        if quiet >= self._interval and came < BUSY_READ_BYTES:
            last_lone, self._last_lone = self._last_lone, now
            # Joined only by an agent whose lines come less than KEEP_FOR apart (a turn
            # would find its next one) while others send too (the turns run anyway).
            if quiet >= self._keep_for or (
                self._turn is None and now - last_lone >= self._interval
            ):
                return
        transport.pause_reading()
        self._held.append((transport, fd, reader, now))
        if came >= BUSY_READ_BYTES:
            due = now + self._busy_interval
            if self._turn is not None and self._turn.when() > due:
                self._turn.cancel()
                self._turn = None
            if self._turn is None:
                self._turn = loop.call_at(due, self._next_turn)
        elif self._turn is None:
            self._turn = loop.call_later(self._interval, self._next_turn)

    @property
    def waiting(self) -> int:
        """Connections out of the poller, to be read on the next turn; a turn is pending
        exactly while there are any."""
        return len(self._held)

    def _writer_behind(self) -> bool:
        # What this turn read and has not handed on yet counts as queued: the bound on
        # memory is the same as when each read went to the writer at once.
        waiting = self._batch.waiting if self._batch is not None else 0
        return self._queued_events() + waiting >= self._max_queued

    def _next_turn(self) -> None:
        self._turn = None
        loop = asyncio.get_running_loop()
        # The next turn is due an interval after this one began, not after its lines were
        # handled: the pace stays READ_INTERVAL however long a turn's lines take.
        began = loop.time()
        if self._batch is None:
            busy = self._read_held()
        else:
            self._batch.begin()
            try:
                busy = self._read_held()
            finally:
                self._batch.end()
        if self._held:
            interval = self._busy_interval if busy else self._interval
            self._turn = loop.call_at(began + interval, self._next_turn)

    def _read_held(self) -> bool:
        """Read every held connection; True when one of them brought BUSY_READ_BYTES."""
        busy = False
        now = asyncio.get_running_loop().time()
        held, self._held = self._held, []
        for index, entry in enumerate(held):
            transport, fd, reader, last_data = entry
            if transport.is_closing():
                # Closed meanwhile (idle close, shutdown, peer gone): its descriptor is
                # closed or about to be, and may soon be another connection's.
                continue
            if self._writer_behind():
                # The writer is behind: these wait for a later turn, still out of the
                # poller (a turn is pending only while events wait to be committed).
                self._held.extend(held[index:])
                break
            came = _read(transport, fd, reader, self._writer_behind)
            if came:
                self._held.append((transport, fd, reader, now))
                busy = busy or came >= BUSY_READ_BYTES
            elif came == 0 and now - last_data < self._keep_for:
                self._held.append(entry)  # empty for now, but it sent a moment ago
            else:
                transport.resume_reading()
        return busy


def _read(
    transport: asyncio.Transport, fd: int, reader: TurnReader, writer_behind: Callable[[], bool]
) -> int | None:
    """Read `fd` until the kernel has no more for now; how many bytes came (0: nothing was
    there), or None if it is to go back to its transport: the stream ended or failed,
    which the transport's own read then meets."""
    came = 0
    for _ in range(READS_PER_TURN):
        try:
            data = os.read(fd, READ_BYTES)
        except BlockingIOError:
            return came
        except OSError:
            return None
        if not data:
            return None
        came += len(data)
        reader.data_received(data)
        if len(data) < READ_BYTES or transport.is_closing() or writer_behind():
            return came
    return came
