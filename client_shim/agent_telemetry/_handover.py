"""What the writer does with events the daemon cannot take: the spool, and drop counts.

Events go to the spool (`_spool.py`) when the daemon cannot be reached, when the in-memory
backlog is full, and at exit for whatever the bounded exit flush left. In mode `off` nothing
is spooled. Events lost anyway (refused by a cap, invalid, too large, a full backlog before
they were encoded) are reported to the daemon as a `client_drops` line, on the connection or
in the spool file, so the user sees the agent's losses in `status` too.

Only the writer thread runs these methods (see _writer.py).
"""

from __future__ import annotations

import socket
import threading
import time
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent_telemetry._consent import mode_is_off
from agent_telemetry._socket import SEND_FLAGS
from agent_telemetry._spool import Spool
from agent_telemetry._wire import encode_client_drops

# The drop reasons the daemon is told about. `disabled`, `no_socket_path` and `mode_off` are
# not losses to report: the user asked for them, or there is no daemon to tell.
REPORTED_DROPS = (
    "backlog_full",
    "invalid",
    "too_large",
    "spool_full",
    "spool_failed",
    "exit_timeout",
)


class Handover:
    """The writer's spool and drop-count side; state is set up in Client._fresh_state()."""

    queue: deque[Any]
    agent: str
    spool_dir: Path | None
    spooled: int
    _spool: Spool
    _spooling: int
    _handover_requested: bool
    _handover_done: threading.Event
    _handover_deadline: float
    _reported: dict[str, int]
    _caller_drops: dict[str, int]
    _writer_drops: dict[str, int]
    _caller_lock: threading.RLock
    _state_lock: threading.RLock
    _sock: socket.socket | None
    _lines: deque[bytes]
    _lines_bytes: int
    _chunk: bytes
    _chunk_sent: int
    _chunk_ends: list[int]
    _chunk_done: int
    _chunk_control: int

    if TYPE_CHECKING:  # provided by Writer; stubs here would shadow them

        def _encode_queued(self) -> None: ...
        def _disconnect(self) -> None: ...

    # -- drop counts ------------------------------------------------------------------------

    def _unreported_drops(self, locked: bool = True) -> dict[str, int]:
        if locked:
            with self._caller_lock:
                caller = dict(self._caller_drops)
            with self._state_lock:
                writer = dict(self._writer_drops)
        else:  # the interpreter finalises: a frozen writer may hold the locks (_late.py)
            caller, writer = self._caller_drops, self._writer_drops
        delta = {}
        for reason in REPORTED_DROPS:
            count = caller.get(reason, 0) + writer.get(reason, 0) - self._reported[reason]
            if count > 0:
                delta[reason] = count
        return delta

    def _mark_reported(self, delta: dict[str, int]) -> None:
        for reason, count in delta.items():
            self._reported[reason] += count

    def _take_drops_line(self) -> bytes | None:
        """The counts not yet reported as one line, counted as reported from now on."""
        delta = self._unreported_drops()
        if not delta:
            return None
        self._mark_reported(delta)
        return encode_client_drops(delta, self.agent)

    # -- to the spool -----------------------------------------------------------------------

    def _take_waiting(self) -> tuple[bytes | None, list[bytes]]:
        """Every whole line not yet written to the socket, out of the chunk and the backlog.

        Returns a drop-count line found at the head of the chunk apart from the events.
        """
        with self._state_lock:
            carried = None
            lines: list[bytes] = []
            chunk, ends, done = self._chunk, self._chunk_ends, self._chunk_done
            start = ends[done - 1] if done else 0
            for index in range(done, len(ends)):
                piece = chunk[start : ends[index]]
                start = ends[index]
                if index == 0 and self._chunk_control:
                    carried = piece
                else:
                    lines.append(piece)
            self._chunk, self._chunk_ends = b"", []
            self._chunk_sent = self._chunk_done = self._chunk_control = 0
            lines.extend(self._lines)
            self._lines.clear()
            self._lines_bytes = 0
            self._spooling += len(lines)
        return carried, lines

    def _spool_waiting(self) -> None:
        carried, lines = self._take_waiting()
        if lines or carried:
            self._spool_out(lines, carried)

    def _spool_out(self, lines: list[bytes], carried: bytes | None = None) -> None:
        """Write `lines` (already counted in `_spooling`) to the spool, or count them."""
        spool = self._spool
        if spool.directory != self.spool_dir:
            spool.seal()
            spool.directory = self.spool_dir
        if mode_is_off():
            spool.discard()  # nothing is kept in `off`, not even what was spooled before
            with self._state_lock:
                self._writer_drops["mode_off"] += len(lines)
                self._spooling -= len(lines)
            return
        written, reason = spool.write(lines) if lines else (0, None)
        with self._state_lock:
            self.spooled += written
            if reason is not None:
                self._writer_drops[reason] += len(lines) - written
            self._spooling -= len(lines)
        if carried is not None:
            spool.write_control(carried)

    def _seal_spool(self, drops_need_a_file: bool = False) -> None:
        """Complete the spool file for the daemon, with the drop counts not yet reported.

        Without a file open, the counts wait for the connection, unless `drops_need_a_file`
        (the exit, with no daemon to take them).
        """
        spool = self._spool
        delta = self._unreported_drops()
        if delta and (spool.is_open or drops_need_a_file) and not mode_is_off():
            if spool.directory != self.spool_dir:
                spool.seal()
                spool.directory = self.spool_dir
            if spool.write_control(encode_client_drops(delta, self.agent)):
                self._mark_reported(delta)
        spool.seal()

    # -- at exit ----------------------------------------------------------------------------

    def _hand_over(self) -> None:
        """Everything still here goes to the spool, and the spool file is sealed.

        Asked for by the exit flush (Client._spool_rest) once the daemon has had its time.
        """
        try:
            # Bounded in time: a loaded machine may encode slowly, and other threads may
            # still be tracking. What is not encoded by the deadline is counted, and the
            # count reaches the daemon with the rest, in a file that is complete.
            while self.queue and time.monotonic() < self._handover_deadline:
                self._encode_queued()
            self._drop_queued("exit_timeout")
            if self._sock is not None and self._torn():
                # A line half written would be glued to the next one: hang up instead, and
                # the daemon discards the half line (the spool has it whole).
                self._disconnect()
            carried, lines = self._take_waiting()
            if self._sock is not None and not lines and carried is None:
                carried = self._send_drops_now()
            if lines or carried:
                self._spool_out(lines, carried)
            self._seal_spool(drops_need_a_file=True)
        finally:
            self._handover_requested = False
            self._handover_done.set()

    def _drop_queued(self, reason: str) -> None:
        queue = self.queue
        with self._state_lock:
            dropped = 0
            for _ in range(len(queue)):
                try:
                    queue.popleft()
                except IndexError:
                    break
                dropped += 1
            self._writer_drops[reason] += dropped

    def _torn(self) -> bool:
        done = self._chunk_done
        return self._chunk_sent != (self._chunk_ends[done - 1] if done else 0)

    def _send_drops_now(self) -> bytes | None:
        """Write the drop counts on the live connection; the line, if it did not go whole."""
        line = self._take_drops_line()
        if line is None or self._sock is None:
            return line
        try:
            written = self._sock.send(line, SEND_FLAGS)
        except OSError:
            written = 0
        if written == len(line):
            return None
        if written:
            self._disconnect()
        return line
