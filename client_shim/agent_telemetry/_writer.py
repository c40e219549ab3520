"""The writer thread's half of the client: encode what track() queued, write it to the daemon.

Only the writer thread runs these methods; `Client` (which inherits them) sets the shared
state up in `_fresh_state()` and reads it under `_state_lock` for `pending()` and `stats()`.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections import deque
from typing import Any

from agent_telemetry._handover import Handover
from agent_telemetry._paths import ingest_socket_path
from agent_telemetry._socket import SEND_FLAGS, Wakeup, open_connection
from agent_telemetry._wire import LineTooLarge, encode_event

# Encoded lines waiting for the socket; beyond this the oldest go to the spool (the Node
# shim's cap too).
BACKLOG_BYTES = 8 * 1024 * 1024
ENCODE_BATCH = 1_000
YIELD_MASK = 63  # the writer yields the GIL every 64 events encoded (about 0.3 ms)
CHUNK_BYTES = 256 * 1024
BACKOFF_MIN = 0.05
BACKOFF_MAX = 5.0
# A full socket is waited on in slices this long (track(), flush() and configure() also
# end the wait early).
STALL_POLL = 0.25

# The option a span's event carries its ids in, as numbers: (trace, span, parent or None).
SPAN_IDS = "_span_ids"
_OPTIONS = frozenset(
    ("timestamp", "uuid", "agent", "trace_id", "span_id", "parent_span_id", SPAN_IDS)
)


class Invalid:
    """Stands in for properties that could not be copied; the writer counts the event."""


INVALID = Invalid()

Item = tuple[Any, Any, int, dict[str, Any], str]  # event, properties, time_ns, options, agent


class Writer(Handover):
    """Moves events from the queue to encoded lines, to a chunk, to the socket.

    What the socket cannot take goes to the spool (`Handover`, _handover.py).
    """

    queue: deque[Item]
    idle: bool
    socket_path: str | None
    socket_path_given: bool
    local_only: bool  # DO_NOT_TRACK where the agent runs: every event asks not to be sent
    sent: int
    connect_failures: int
    _wake: Wakeup
    _state_lock: threading.RLock
    _sock: socket.socket | None
    _encoding: int
    _lines: deque[bytes]
    _lines_bytes: int
    _chunk: bytes
    _chunk_sent: int
    _chunk_ends: list[int]
    _chunk_done: int
    _chunk_control: int
    _backoff: float
    _retry_at: float
    _reconfigured: bool
    _urgent: bool
    _writer_drops: dict[str, int]
    _writer: int | None
    _claims: dict[str, int]

    def _run(self) -> None:
        me = threading.get_ident()
        if self._claims.setdefault("writer", me) != me:
            return  # a start interrupted as its thread began was tried again: one runs
        self._writer = me
        while True:
            try:
                self._step()
            except Exception:
                # Unexpected: start over on a fresh connection rather than stop for good.
                # A batch taken for encoding is lost with it; pending() must not wait for it.
                with self._state_lock:
                    self._encoding = 0
                self._disconnect()
                time.sleep(BACKOFF_MIN)

    def _step(self) -> None:
        if self._reconfigured:
            self._reconfigured = False
            self._retry_at = 0.0
            self._disconnect()
        self._encode_queued()
        if self._handover_requested:
            self._hand_over()
            return
        if not self._chunk and not self._next_chunk():
            if self._spool.is_open and self._sock is None:
                # Nothing waits in memory, but a spool file does: keep trying the daemon, so
                # the file is completed for it as soon as it is back.
                self._connect_when_due()
            else:
                self._sleep_until_woken()
            return
        if self._sock is None and not self._connect_when_due():
            return
        self._send()

    def _connect_when_due(self) -> bool:
        """Connect if the backoff allows; True when connected."""
        wait = self._retry_at - time.monotonic()
        if self._urgent:
            wait = min(wait, BACKOFF_MIN)  # flush() waits: retry at the shortest backoff
        if wait > 0:
            # Woken early by configure(), flush() or a growing queue: encode, look again.
            self._idle_wait(wait)
            return False
        if not self._connect():
            self._schedule_retry()
            # Down, missing or not the user's: what waits goes to the spool, where the
            # daemon finds it when it starts (or when this process reconnects).
            self._spool_waiting()
            return False
        self._seal_spool()  # a daemon that is back reads it when an agent connects
        return True

    def _idle_wait(self, timeout: float, writable: socket.socket | None = None) -> None:
        """Wait while the daemon cannot take bytes — unless flush() or the exit waits and
        events are still to be encoded.

        Encoding them then is work done anyway (the socket or the spool takes every line
        later), and it leaves the exit only the writing of lines: a stalled daemon costs
        the exit its stall allowance, not that plus the encoding of a burst. Otherwise the
        writer encodes a batch each time track() nudges it, and leaves the caller the GIL.
        """
        if self.queue and self._urgent:
            return  # the next step encodes another batch
        self._wake.wait(timeout, writable=writable)
        self._wake.clear()

    def _encode_queued(self) -> None:
        queue = self.queue
        if not queue:
            return
        # Take a batch under the lock, encode it outside: encoding may run the caller's
        # code (a mapping's items(), a tzinfo), which may call stats() or flush().
        batch: list[Any] = []
        with self._state_lock:
            for _ in range(min(len(queue), ENCODE_BATCH)):
                try:
                    batch.append(queue.popleft())
                except IndexError:
                    break
            self._encoding = len(batch)
        lines: list[bytes] = []
        size = 0
        done = 0
        drops = {"invalid": 0, "too_large": 0}
        # In the exit's handover the caller waits for this thread and gains nothing from a
        # yield, which costs ~55 µs of wall time each (Linux's timer slack on sleep(0)):
        # 0.9 µs an event on the agent's exit. Unless another thread may still be tracking
        # (this one is not a threading.Thread: any besides the main thread may be).
        yielding = not self._handover_requested or threading.active_count() > 1
        for index, item in enumerate(batch):
            batch[index] = None  # let it go once encoded
            line = self._encode(item)
            del item
            if type(line) is bytes:
                lines.append(line)
                size += len(line)
            else:
                drops[line] += 1  # type: ignore[index]
            if size >= CHUNK_BYTES:  # big events: cap as we go, not after the whole batch
                self._add_lines(lines, size, index + 1 - done, drops)
                lines, size, done = [], 0, index + 1
                drops = {"invalid": 0, "too_large": 0}
            if yielding and index & YIELD_MASK == YIELD_MASK:
                # Hand the GIL back now and then: a caller waiting for it would otherwise
                # wait out the interpreter's whole switch interval (5 ms) in track().
                time.sleep(0)
        self._add_lines(lines, size, len(batch) - done, drops)

    def _add_lines(
        self, lines: list[bytes], size: int, encoded: int, drops: dict[str, int]
    ) -> None:
        overflow: list[bytes] = []
        with self._state_lock:
            self._lines.extend(lines)
            self._lines_bytes += size
            self._encoding -= encoded
            for reason, count in drops.items():
                self._writer_drops[reason] += count
            while self._lines_bytes > BACKLOG_BYTES and self._lines:
                line = self._lines.popleft()  # oldest first
                self._lines_bytes -= len(line)
                overflow.append(line)
            self._spooling += len(overflow)
        if overflow:
            self._spool_out(overflow)

    def _encode(self, item: Item) -> bytes | str:
        event, properties, time_ns, options, agent = item
        timestamp = uuid = trace_id = span_id = parent_span_id = None
        try:
            if properties is INVALID:
                raise TypeError("properties must be a mapping")
            if options:
                if not _OPTIONS.issuperset(options):
                    raise TypeError("unknown option")
                timestamp = options.get("timestamp")
                uuid = options.get("uuid")
                agent = options.get("agent") or agent
                trace_id = options.get("trace_id")
                span_id = options.get("span_id")
                parent_span_id = options.get("parent_span_id")
                ids = options.get(SPAN_IDS)
                if ids is not None:
                    trace, span, parent = ids
                    trace_id, span_id = f"{trace:032x}", f"{span:016x}"
                    if parent is not None:
                        parent_span_id = f"{parent:016x}"
            return encode_event(
                event,
                properties,
                timestamp=timestamp,
                uuid=uuid,
                agent=agent,
                now_ms=time_ns // 1_000_000,
                trace_id=trace_id,
                span_id=span_id,
                parent_span_id=parent_span_id,
                local_only=self.local_only,
            )
        except LineTooLarge:
            return "too_large"
        # TypeError, ValueError, RecursionError: all the caller's input. BaseException
        # because encoding runs the caller's code, which must not end this thread.
        except BaseException:
            return "invalid"

    def _next_chunk(self) -> bool:
        lines = self._lines
        # New drop counts ride at the head of the next chunk; flush() sends them on their own.
        control = self._take_drops_line() if lines or self._urgent else None
        if not lines and control is None:
            return False
        with self._state_lock:
            parts: list[bytes] = [control] if control else []
            size = len(control) if control else 0
            ends: list[int] = [size] if control else []
            taken = 0
            while lines and (size < CHUNK_BYTES or not parts):
                line = lines.popleft()
                parts.append(line)
                size += len(line)
                taken += len(line)
                ends.append(size)
            self._lines_bytes -= taken
            self._chunk, self._chunk_ends = b"".join(parts), ends
            self._chunk_sent = self._chunk_done = 0
            self._chunk_control = 1 if control else 0
        return True

    def _sleep_until_woken(self) -> None:
        self._wake.clear()
        self.idle = True
        # track() appends before it reads `idle`; this reads the queue after setting it.
        # So either track() sees idle and wakes us, or we see its event here.
        if self.queue or self._reconfigured:
            self.idle = False
            return
        self._wake.wait()
        self.idle = False

    def _schedule_retry(self) -> None:
        delay = BACKOFF_MIN if self._urgent else self._backoff
        self._retry_at = time.monotonic() + delay
        if not self._urgent:
            self._backoff = min(self._backoff * 2, BACKOFF_MAX)

    def _connect(self) -> bool:
        if not self.socket_path_given:
            # The runtime folder may have changed hands since the last attempt.
            with contextlib.suppress(Exception):  # else keep the last path worked out
                self.socket_path = str(ingest_socket_path())
        path = self.socket_path
        sock = open_connection(path) if path is not None else None
        if sock is None:
            self.connect_failures += 1
            return False
        self._sock = sock
        self._backoff = BACKOFF_MIN
        return True

    def _disconnect(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()
        if self._chunk_sent:
            # Resend from the first line not written in full: the daemon discards the torn
            # line, and a line it did get is kept once thanks to its uuid.
            with self._state_lock:
                done = self._chunk_done
                start = self._chunk_ends[done - 1] if done else 0
                self._chunk = self._chunk[start:]
                self._chunk_ends = [end - start for end in self._chunk_ends[done:]]
                self._chunk_sent = self._chunk_done = 0
                if done:
                    self._chunk_control = 0  # the drop counts went through

    def _send(self) -> None:
        sock = self._sock
        assert sock is not None
        try:
            written = sock.send(memoryview(self._chunk)[self._chunk_sent :], SEND_FLAGS)
        except (BlockingIOError, InterruptedError):
            # Not taking bytes. Events still queued are encoded meanwhile (see _idle_wait);
            # then wait for room, or to be woken to encode new events.
            self._idle_wait(STALL_POLL, writable=sock)
            return
        except OSError:
            self._disconnect()  # daemon gone or restarted: reconnect on the next step
            return
        self._chunk_sent += written
        ends, done = self._chunk_ends, self._chunk_done
        while done < len(ends) and ends[done] <= self._chunk_sent:
            done += 1
        with self._state_lock:
            events = done - self._chunk_done
            if self._chunk_control and self._chunk_done == 0 and done:
                events -= 1  # the drop counts line is not an event
            self.sent += events
            self._chunk_done = done
            if done == len(ends):
                self._chunk, self._chunk_ends = b"", []
                self._chunk_sent = self._chunk_done = self._chunk_control = 0
