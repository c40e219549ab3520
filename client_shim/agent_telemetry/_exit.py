"""Flushing: waiting for the writer, bounded, in flush() and at the process's exit.

At exit the daemon first gets its time (EXIT_BUDGET while it reads, EXIT_STALL once it
stops), then the writer thread spools what is left (`Handover._hand_over`).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from agent_telemetry._socket import Wakeup
from agent_telemetry._spool import Spool

# At exit: a daemon that stops taking bytes costs EXIT_STALL (half a second); one that keeps
# reading — healthy but busy with other agents — may take up to EXIT_BUDGET, so a burst from
# a short-lived process is delivered in full rather than cut at a fixed time. At 0.2 s a
# daemon merely starved of CPU on a loaded 2-core machine looked stalled; 0.5 s is also the
# Node shim's figure. What is left then goes to the spool: writing it takes milliseconds,
# encoding events the writer had not reached yet a few µs each (a tight loop's burst right
# before exit). EXIT_SPOOL_BUDGET bounds that, and a writer stuck in the caller's own code.
EXIT_BUDGET = 2.0
EXIT_STALL = 0.5
EXIT_SPOOL_BUDGET = 2.0
# Events tracked after the exit flush (from atexit handlers registered before the import,
# logging.shutdown, daemon threads) are each flushed on the spot, all together for at most
# this long.
LATE_BUDGET = 0.5
# After EXIT_SPOOL_BUDGET the writer stops encoding, counts what is left as exit_timeout,
# and writes and seals the spool file: this long is allowed for that.
HANDOVER_SEAL_MARGIN = 0.5
# How often a waiting flush() looks at the writer's progress: often enough for a flush to
# return promptly, seldom enough not to keep taking the GIL from the writer it waits for.
DRAIN_POLL = 0.005


class Flushing:
    """The caller's side of waiting for the writer; state is set up in Client._fresh_state()."""

    queue: deque[Any]
    sent: int
    connect_failures: int
    _writer: int | None
    _state_lock: threading.RLock
    _wake: Wakeup
    _spool: Spool
    _encoding: int
    _lines: deque[bytes]
    _chunk_ends: list[int]
    _chunk_done: int
    _chunk_control: int
    _spooling: int
    _urgent: bool
    _retry_at: float
    _exited: bool
    _handover_requested: bool
    _handover_done: threading.Event
    _handover_deadline: float
    _late_budget: float

    if TYPE_CHECKING:  # provided by Client and Handover; stubs here would shadow them

        def _wake_writer(self) -> None: ...
        def _update_refusal(self) -> None: ...
        def _unreported_drops(self, locked: bool = True) -> dict[str, int]: ...

    def _on_writer(self) -> bool:
        """Whether this is the writer thread (running caller code it is encoding)."""
        return self._writer is not None and threading.get_ident() == self._writer

    def pending(self) -> int:
        """Events taken by track() and not yet written to the socket or the spool, or dropped."""
        with self._state_lock:
            in_chunk = len(self._chunk_ends) - self._chunk_done
            if self._chunk_control and not self._chunk_done:
                in_chunk -= 1  # the drop-count line at its head is not an event
            return len(self.queue) + self._encoding + len(self._lines) + in_chunk + self._spooling

    def flush(self, timeout: float = 1.0) -> bool:
        """Wait up to `timeout` seconds until every queued event is written to the daemon's
        socket or, while the daemon cannot be reached, to the spool; True if so. NaN or a
        negative timeout waits for nothing."""
        try:
            if not timeout >= 0:
                timeout = 0.0  # NaN too: a deadline never reached would wait forever
            return self._drain(timeout, stall=None, give_up_when_down=False)
        except Exception:
            return False

    def _drain(self, timeout: float, stall: float | None, give_up_when_down: bool) -> bool:
        if self.pending() == 0:
            return True
        if self._on_writer():
            # Called by the caller's code while the writer encodes it (a logging handler,
            # a mapping's items()): waiting here would wait for ourselves.
            return False
        start = time.monotonic()
        deadline = start + timeout
        failures = self.connect_failures
        progress_at, last_sent = start, self.sent
        self._urgent = True
        try:
            if self._writer is None:
                self._wake_writer()
            self._retry_at = 0.0  # cut a reconnect backoff short
            self._wake.set()
            while self.pending():
                now = time.monotonic()
                if now >= deadline:
                    return False
                if give_up_when_down and self.connect_failures > failures:
                    return False
                if self.sent != last_sent:
                    progress_at, last_sent = now, self.sent
                elif stall is not None and now - progress_at >= stall:
                    return False
                time.sleep(DRAIN_POLL)
            return True
        finally:
            self._urgent = False

    def _at_exit(self) -> None:
        # Bounded: a stalled daemon costs at most EXIT_STALL, a missing one one connect(),
        # a reading one at most EXIT_BUDGET; then the rest is spooled.
        with contextlib.suppress(Exception):
            self._drain(EXIT_BUDGET, stall=EXIT_STALL, give_up_when_down=True)
        with contextlib.suppress(Exception):
            self._spool_rest(EXIT_SPOOL_BUDGET)
        self._exited = True
        self._update_refusal()
        # From here on each track() flushes its own event. Those other threads queued while
        # the writer spooled the rest have no call after them to do it.
        if self.pending():
            self._flush_late()

    def _flush_late(self) -> None:
        """Deliver or spool what is queued now, from the late budget (after the exit flush)."""
        with contextlib.suppress(Exception):
            budget = self._late_budget
            if budget > 0 and not self._on_writer():
                start = time.monotonic()
                self._drain(budget, stall=EXIT_STALL, give_up_when_down=True)
                self._spool_rest(max(budget - (time.monotonic() - start), 0.05))
                self._late_budget -= time.monotonic() - start

    def _spool_rest(self, timeout: float) -> None:
        """Have the writer spool what is still here, report drops, seal the spool file."""
        if not (self.pending() or self._spool.is_open or self._unreported_drops()):
            return  # everything was delivered: nothing to write, no file made
        if self._on_writer():
            return  # caller code running on the writer: it cannot wait for itself
        self._handover_done.clear()
        self._handover_deadline = time.monotonic() + timeout
        self._handover_requested = True
        if self._writer is None:
            self._wake_writer()
        self._wake.set()
        # The writer stops encoding at the deadline; then it writes, reports and seals.
        self._handover_done.wait(timeout + HANDOVER_SEAL_MARGIN)
