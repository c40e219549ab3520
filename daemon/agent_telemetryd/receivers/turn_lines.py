"""ingest.sock's lines on their way to the ingestor: one hand-over a read turn, not one a
connection.

A turn (read_turns.py) reads each busy connection in turn; handing each read's lines to
the ingestor as it came cost each read the ingestor's fixed part (a decoding's set-up,
its column checks, its rows, a write request), 4 times a turn with 4 agents. So while a
turn reads, the complete lines of every read are kept here, in the order they were read,
and handed over together when the turn ends (`Ingestor.accept_turn`, which takes them one
read after another as before when they cannot go at once).

Anything else the connections tell the ingestor meanwhile (a line over the size limit)
first hands over what was kept, so the ingestor is told everything in the order it was
read. Outside a turn (a connection's first read, from the poller; its end) nothing is
kept: every call goes straight on, as it always did.
"""

from __future__ import annotations

from agent_telemetryd.ingest import Ingestor, Source


class TurnLines:
    """The lines of a turn's reads, kept until it ends (`ReadTurns`' batch)."""

    def __init__(self, ingestor: Ingestor) -> None:
        self._ingestor = ingestor
        self._reads: list[tuple[list[bytes], Source]] = []
        self._keeping = False
        # Lines kept and not yet handed over: ReadTurns counts them with the writer's
        # queue, so a turn stops reading once both hold MAX_QUEUED_EVENTS.
        self.waiting = 0

    def begin(self) -> None:
        """A turn starts reading: keep the lines until `end`."""
        self._keeping = True

    def end(self) -> None:
        """The turn has read every connection: hand over what it read."""
        self._keeping = False
        self._hand_over()

    def take(self, lines: list[bytes], source: Source) -> None:
        """Complete lines of one read from `source`, each under the size limit and none
        blank (NdjsonProtocol has checked)."""
        if self._keeping:
            self._reads.append((lines, source))
            self.waiting += len(lines)
        else:
            self._ingestor.accept_lines(lines, source)

    def reject_unparsable(self, reason: str, source: Source) -> None:
        """`Ingestor.reject_unparsable`, after the lines read before it."""
        self._hand_over()
        self._ingestor.reject_unparsable(reason, source)

    def count_torn_line(self, source: Source) -> None:
        """`Ingestor.count_torn_line`, after the lines read before it."""
        self._hand_over()
        self._ingestor.count_torn_line(source)

    def _hand_over(self) -> None:
        if not self._reads:
            return
        reads, self._reads = self._reads, []
        self.waiting = 0
        self._ingestor.accept_turn(reads)
