"""The per-process client: a hand-off queue, one writer thread, one connection to ingest.sock.

`track()` only timestamps the call, copies the properties and appends a tuple to a deque;
everything that can be slow (JSON, uuids, the socket) happens on the writer thread.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Mapping
from typing import Any

from agent_telemetry._paths import ingest_socket_path
from agent_telemetry._settings import clean_agent, default_agent, env_disabled
from agent_telemetry._socket import SEND_FLAGS, open_connection, wait_writable
from agent_telemetry._wire import LineTooLarge, encode_event

# The backlog: events waiting for the writer, oldest dropped beyond this. Generous so that a
# tight loop of tens of thousands of events, which outruns the writer while both share the
# GIL, is still delivered in full to a healthy daemon.
MAX_QUEUE = 50_000
ENCODE_BATCH = 1_000
# Encode at most this far ahead of the socket, so big events cannot pile up as bytes too.
ENCODE_AHEAD_BYTES = 1024 * 1024
CHUNK_BYTES = 256 * 1024
BACKOFF_MIN = 0.05
BACKOFF_MAX = 5.0
# A full socket is waited on in slices this long, so that configure() still takes effect
# while the daemon is not reading.
STALL_POLL = 0.25
# At exit: a daemon that stops taking bytes costs EXIT_STALL (a fraction of a second); one
# that keeps reading — healthy but busy with other agents — may take up to EXIT_BUDGET, so
# a burst from a short-lived process is delivered in full rather than cut at a fixed time.
EXIT_BUDGET = 2.0
EXIT_STALL = 0.2

_OPTIONS = frozenset(("timestamp", "uuid", "agent"))


class _Invalid:
    """Stands in for properties that could not be copied; the writer counts the event."""


_INVALID = _Invalid()


def _coerce_properties(value: object) -> dict[str, Any] | _Invalid:
    if isinstance(value, Mapping):
        return dict(value)
    return _INVALID


class Client:
    """One per process; `agent_telemetry` exposes its methods as module functions."""

    def __init__(self) -> None:
        self._read_settings()
        self._fresh_state()
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._after_fork_in_child)
        atexit.register(self._at_exit)

    # -- settings -------------------------------------------------------------------------

    def _read_settings(
        self, agent: str | None = None, socket_path: str | os.PathLike[str] | None = None
    ) -> None:
        self.disabled = env_disabled()
        self.agent = clean_agent(agent) if agent else default_agent()
        self.socket_path = os.fspath(socket_path) if socket_path else str(ingest_socket_path())

    def configure(
        self,
        *,
        agent: str | None = None,
        disabled: bool | None = None,
        socket_path: str | os.PathLike[str] | None = None,
    ) -> None:
        """Re-read the environment and apply overrides; events already queued keep theirs.

        `agent` names the source of this process's events, `disabled` overrides
        `AGENT_TELEMETRY_DISABLED`, `socket_path` overrides the ingest socket location.
        """
        try:
            self._read_settings(agent, socket_path)
            if disabled is not None:
                self.disabled = bool(disabled)
            # The writer drops the old connection and retries at once with the new path.
            self._reconfigured = True
            self._backoff = BACKOFF_MIN
            self._wake.set()
        except Exception:
            pass  # Configuration mistakes must not break the agent either.

    # -- state ----------------------------------------------------------------------------

    def _fresh_state(self) -> None:
        self.queue: deque[tuple[Any, Any, int, dict[str, Any], str]] = deque()
        # True while the writer is asleep (or not started): only then does track() wake it.
        self.idle = True
        self._wake = threading.Event()
        # Reentrant: track() from a signal handler must not deadlock on its own thread.
        self._caller_lock = threading.RLock()
        # Held by the writer while events move between queue, lines and chunk, so that
        # flush() and stats() never see an event in neither place.
        self._state_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None
        self._lines: deque[bytes] = deque()
        self._lines_bytes = 0
        self._chunk = b""
        self._chunk_sent = 0  # bytes of the chunk written to the socket
        self._chunk_ends: list[int] = []  # offset just past each line of the chunk
        self._chunk_done = 0  # lines of the chunk written in full
        self._backoff = BACKOFF_MIN
        self._reconfigured = False
        self._urgent = False
        self.connect_failures = 0
        self.sent = 0
        self._caller_drops = {"backlog_full": 0, "invalid": 0, "disabled": 0}
        self._writer_drops = {"invalid": 0, "too_large": 0}

    def _after_fork_in_child(self) -> None:
        # The child starts clean: the parent's queue is the parent's to send, its thread
        # does not exist here, and writing to the parent's socket would interleave lines.
        sock = self._sock
        self._fresh_state()
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()  # closes only the child's copy; the parent's stays connected

    # -- the caller's side --------------------------------------------------------------

    def track(self, event: str, properties: dict[str, Any] | None = None, **options: Any) -> None:
        """Queue one event for the daemon; never raises, never blocks.

        Options: `timestamp` (datetime or RFC 3339 text), `uuid`, `agent`.
        """
        if self.disabled:
            self._count_caller_drop("disabled")
            return
        try:
            if properties is not None:
                properties = (
                    properties.copy()
                    if type(properties) is dict
                    else _coerce_properties(properties)  # type: ignore[assignment]
                )
            queue = self.queue
            if len(queue) >= MAX_QUEUE:
                self._drop_oldest()
            queue.append((event, properties, time.time_ns(), options, self.agent))
            if self.idle:
                self._wake_writer()
        except Exception:
            self._count_caller_drop("invalid")

    def _count_caller_drop(self, reason: str) -> None:
        with self._caller_lock:
            self._caller_drops[reason] += 1

    def _drop_oldest(self) -> None:
        with self._caller_lock:
            try:
                self.queue.popleft()
            except IndexError:
                return  # the writer emptied it meanwhile
            self._caller_drops["backlog_full"] += 1

    def _wake_writer(self) -> None:
        self.idle = False
        if self._thread is None:
            with self._caller_lock:
                if self._thread is None:
                    self._start_writer()
        self._wake.set()

    def _start_writer(self) -> None:
        thread = threading.Thread(target=self._run, name="agent-telemetry-writer", daemon=True)
        try:
            thread.start()
        except RuntimeError:
            self.idle = True  # interpreter shutting down: the next call may try again
            return
        self._thread = thread
        self._register_multiprocessing_exit()

    def _register_multiprocessing_exit(self) -> None:
        # A multiprocessing child made by fork() leaves through os._exit(), which skips
        # atexit; its own exit hook still runs, so flush from there too.
        mp_util = sys.modules.get("multiprocessing.util")
        mp = sys.modules.get("multiprocessing")
        if mp_util is None or mp is None:
            return
        try:
            if mp.parent_process() is not None:
                mp_util.Finalize(None, self._at_exit, exitpriority=100)
        except Exception:
            pass

    # -- flushing -------------------------------------------------------------------------

    def pending(self) -> int:
        """Events taken by track() and neither written to the socket nor dropped."""
        with self._state_lock:
            return len(self.queue) + len(self._lines) + len(self._chunk_ends) - self._chunk_done

    def flush(self, timeout: float = 1.0) -> bool:
        """Wait up to `timeout` seconds until every queued event is written; True if so."""
        try:
            return self._drain(timeout, stall=None, give_up_when_down=False)
        except Exception:
            return False

    def _drain(self, timeout: float, stall: float | None, give_up_when_down: bool) -> bool:
        if self.pending() == 0:
            return True
        start = time.monotonic()
        deadline = start + timeout
        failures = self.connect_failures
        progress_at, last_sent = start, self.sent
        self._urgent = True
        try:
            if self._thread is None:
                self._wake_writer()
            self._wake.set()  # cut short a reconnect backoff
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
                time.sleep(0.001)
            return True
        finally:
            self._urgent = False

    def _at_exit(self) -> None:
        # Bounded: a stalled daemon costs at most EXIT_STALL, a missing one one connect(),
        # a reading one at most EXIT_BUDGET.
        with contextlib.suppress(Exception):
            self._drain(EXIT_BUDGET, stall=EXIT_STALL, give_up_when_down=True)

    def stats(self) -> dict[str, Any]:
        """Counters for this process: `queued`, `sent`, `dropped` and `drops` by reason."""
        with self._caller_lock:
            caller = dict(self._caller_drops)
        writer = dict(self._writer_drops)
        drops = {
            "backlog_full": caller["backlog_full"],
            "invalid": caller["invalid"] + writer["invalid"],
            "too_large": writer["too_large"],
            "disabled": caller["disabled"],
        }
        return {
            "queued": self.pending(),
            "sent": self.sent,
            "dropped": sum(drops.values()),
            "drops": drops,
            "connected": self._sock is not None,
            "connect_failures": self.connect_failures,
            "disabled": self.disabled,
            "agent": self.agent,
            "socket_path": self.socket_path,
        }

    # -- the writer thread ----------------------------------------------------------------

    def _run(self) -> None:
        while True:
            try:
                self._step()
            except Exception:
                # Unexpected: start over on a fresh connection rather than stop for good.
                self._disconnect()
                time.sleep(BACKOFF_MIN)

    def _step(self) -> None:
        if self._reconfigured:
            self._reconfigured = False
            self._disconnect()
        self._encode_queued()
        if not self._chunk and not self._next_chunk():
            self._sleep_until_woken()
            return
        if self._sock is None and not self._connect():
            self._sleep_backoff()
            return
        self._send()

    def _encode_queued(self) -> None:
        queue, lines = self.queue, self._lines
        with self._state_lock:
            for _ in range(min(len(queue), ENCODE_BATCH)):
                if self._lines_bytes >= ENCODE_AHEAD_BYTES:
                    break
                try:
                    item = queue.popleft()
                except IndexError:
                    break
                line = self._encode(item)
                if line is not None:
                    lines.append(line)
                    self._lines_bytes += len(line)

    def _encode(self, item: tuple[Any, Any, int, dict[str, Any], str]) -> bytes | None:
        event, properties, time_ns, options, agent = item
        timestamp = uuid = None
        try:
            if properties is _INVALID:
                raise TypeError("properties must be a mapping")
            if options:
                if not _OPTIONS.issuperset(options):
                    raise TypeError("unknown option")
                timestamp = options.get("timestamp")
                uuid = options.get("uuid")
                agent = options.get("agent") or agent
            return encode_event(
                event,
                properties,
                timestamp=timestamp,
                uuid=uuid,
                agent=agent,
                now_ms=time_ns // 1_000_000,
            )
        except LineTooLarge:
            self._writer_drops["too_large"] += 1
        except Exception:  # TypeError, ValueError, RecursionError: all the caller's input
            self._writer_drops["invalid"] += 1
        return None

    def _next_chunk(self) -> bool:
        lines = self._lines
        if not lines:
            return False
        with self._state_lock:
            parts: list[bytes] = []
            ends: list[int] = []
            size = 0
            while lines and (size < CHUNK_BYTES or not parts):
                line = lines.popleft()
                parts.append(line)
                size += len(line)
                ends.append(size)
            self._lines_bytes -= size
            self._chunk, self._chunk_ends = b"".join(parts), ends
            self._chunk_sent = self._chunk_done = 0
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

    def _sleep_backoff(self) -> None:
        delay = BACKOFF_MIN if self._urgent else self._backoff
        self._wake.wait(delay)
        self._wake.clear()
        if not self._urgent:
            self._backoff = min(self._backoff * 2, BACKOFF_MAX)

    def _connect(self) -> bool:
        sock = open_connection(self.socket_path)
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

    def _send(self) -> None:
        sock = self._sock
        assert sock is not None
        try:
            written = sock.send(memoryview(self._chunk)[self._chunk_sent :], SEND_FLAGS)
        except (BlockingIOError, InterruptedError):
            wait_writable(sock, STALL_POLL)
            return
        except OSError:
            self._disconnect()  # daemon gone or restarted: reconnect on the next step
            return
        self._chunk_sent += written
        ends, done = self._chunk_ends, self._chunk_done
        while done < len(ends) and ends[done] <= self._chunk_sent:
            done += 1
        with self._state_lock:
            self.sent += done - self._chunk_done
            self._chunk_done = done
            if done == len(ends):
                self._chunk, self._chunk_ends = b"", []
                self._chunk_sent = self._chunk_done = 0
