"""The per-process client: a hand-off queue, one writer thread, one connection to ingest.sock.

`track()` only timestamps the call, copies the properties and appends a tuple to a deque;
everything that can be slow (JSON, uuids, the socket, the spool) happens on the writer
thread (`_writer.py`, `_handover.py`).
"""

from __future__ import annotations

import _thread
import atexit
import contextlib
import os
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from agent_telemetry._exit import LATE_BUDGET, Flushing
from agent_telemetry._handover import REPORTED_DROPS
from agent_telemetry._late import send_lines, spool_lines
from agent_telemetry._paths import ingest_socket_path, spool_dir
from agent_telemetry._settings import clean_agent, default_agent, env_disabled, env_do_not_track
from agent_telemetry._socket import Wakeup
from agent_telemetry._spool import Spool
from agent_telemetry._wire import encode_client_drops
from agent_telemetry._writer import BACKOFF_MIN, INVALID, Invalid, Item, Writer

# Events not yet encoded, oldest dropped beyond this. Generous so that a tight loop of tens
# of thousands of events, which outruns the writer while both share the GIL, is still
# delivered in full to a healthy daemon.
MAX_QUEUE = 50_000
# Every this many queued events, track() wakes the writer even while it waits out a
# reconnect backoff, so that events are encoded, and so held to BACKLOG_BYTES, as they come.
# track() tests `len & 1023` with the number written out: keep the two in step.
NUDGE_EVERY = 1024


def _coerce_properties(value: object) -> dict[str, Any] | Invalid:
    if isinstance(value, Mapping):
        return dict(value)
    return INVALID


def _own_properties(properties: Any) -> dict[str, Any] | Invalid | None:
    """The caller's properties as the shim keeps them: one level copied (nested values are
    read when the writer encodes the event), a mapping made a dict, anything else invalid.
    `track()` spells this out inline: a call is a third of its cost."""
    if properties is None:
        return None
    return properties.copy() if type(properties) is dict else _coerce_properties(properties)


class Client(Flushing, Writer):
    """One per process; `agent_telemetry` exposes its methods as module functions.

    The caller's side lives here; flushing and the exit in `Flushing` (_exit.py); the
    writer thread's side in `Writer` (_writer.py) and `Handover` (_handover.py).
    """

    def __init__(self) -> None:
        self._fresh_state()
        self._read_settings()
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._after_fork_in_child)
        atexit.register(self._at_exit)

    # -- settings -------------------------------------------------------------------------

    def _read_settings(
        self,
        agent: str | None = None,
        socket_path: str | os.PathLike[str] | None = None,
        spool: str | os.PathLike[str] | None = None,
    ) -> None:
        self.disabled = env_disabled()
        self.local_only = env_do_not_track()
        self.agent = clean_agent(agent) if agent else default_agent()
        self.socket_path_given = bool(socket_path)
        try:
            self.socket_path = os.fspath(socket_path) if socket_path else str(ingest_socket_path())
        except Exception:
            # AGENT_TELEMETRY_HOME names an unknown user's home (~nobody/x), or is relative
            # while the working directory is gone: no daemon can be reached, so events are
            # dropped and counted as `no_socket_path` rather than the import failing.
            self.socket_path = None
        try:
            self.spool_dir: Path | None = Path(spool) if spool else spool_dir()
        except Exception:
            self.spool_dir = None  # no home: spooling is refused and counted (spool_failed)
        self._update_refusal()

    def _update_refusal(self) -> None:
        # One attribute for track() to test: None, or why every call is refused.
        if self.disabled:
            self._refuse: str | None = "disabled"
        elif self.socket_path is None:
            self._refuse = "no_socket_path"
        elif self._exited:
            self._refuse = "late"
        else:
            self._refuse = None

    def configure(
        self,
        *,
        agent: str | None = None,
        disabled: bool | None = None,
        socket_path: str | os.PathLike[str] | None = None,
        spool_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        """Re-read the environment and apply overrides; events already queued keep theirs.

        `agent` names the source of this process's events, `disabled` overrides
        `AGENT_TELEMETRY_DISABLED`, `socket_path` overrides the ingest socket location and
        `spool_dir` the spool folder (by default `spool/` in the daemon's data dir).
        """
        try:
            self._read_settings(agent, socket_path, spool_dir)
            if disabled is not None:
                self.disabled = bool(disabled)
                self._update_refusal()
            # The writer drops the old connection and retries at once with the new path.
            self._reconfigured = True
            self._backoff = BACKOFF_MIN
            self._wake.set()
        except Exception:
            pass  # Configuration mistakes must not break the agent either.

    # -- state ----------------------------------------------------------------------------

    def _fresh_state(self) -> None:
        self.queue: deque[Item] = deque()
        # True while the writer is asleep (or not started): only then does track() wake it.
        self.idle = True
        self._wake = Wakeup()
        # Reentrant: track() from a signal handler must not deadlock on its own thread.
        self._caller_lock = threading.RLock()
        # The token of the call that starts the writer, put in by dict.setdefault (atomic)
        # and kept: a second caller, or a signal handler that interrupts the first while
        # the thread starts, finds it and starts none (_start_writer). The writer thread
        # itself claims `writer` with its ident: only the first to claim it runs (_run).
        self._starter: dict[str, object] = {}
        self._claims: dict[str, int] = {}
        # Held by the writer while events move between queue, lines and chunk, so that
        # flush() and stats() never see an event in neither place. No caller code runs
        # under it; reentrant for a signal handler or finalizer calling stats() meanwhile.
        self._state_lock = threading.RLock()
        self._writer: int | None = None  # the writer thread's ident, once started
        self._sock: socket.socket | None = None
        self._encoding = 0  # events taken from the queue and being encoded
        self._lines: deque[bytes] = deque()
        self._lines_bytes = 0
        self._chunk = b""
        self._chunk_sent = 0  # bytes of the chunk written to the socket
        self._chunk_ends: list[int] = []  # offset just past each line of the chunk
        self._chunk_done = 0  # lines of the chunk written in full
        self._chunk_control = 0  # 1 while the chunk starts with an unsent drop-count line
        self._spool = Spool(getattr(self, "spool_dir", None))
        self._spooling = 0  # lines taken out of the backlog on their way to the spool
        self._handover_requested = False
        # Set by the writer when a requested hand-over is done; the exit waits on it rather
        # than polling, which would take the GIL from the writer a thousand times a second.
        self._handover_done = threading.Event()
        self._handover_deadline = 0.0
        self._reported = dict.fromkeys(REPORTED_DROPS, 0)
        self._backoff = BACKOFF_MIN
        self._retry_at = 0.0  # monotonic time of the next connect attempt
        self._reconfigured = False
        self._urgent = False
        self._exited = False
        self._late_budget = LATE_BUDGET
        self.connect_failures = 0
        self.sent = 0
        self.spooled = 0
        self._caller_drops = {
            "backlog_full": 0,
            "invalid": 0,
            "disabled": 0,
            "no_socket_path": 0,
        }
        self._writer_drops = {
            "backlog_full": 0,
            "invalid": 0,
            "too_large": 0,
            "spool_full": 0,
            "spool_failed": 0,
            "mode_off": 0,
            "exit_timeout": 0,
        }

    def _after_fork_in_child(self) -> None:
        # The child starts clean: the parent's queue is the parent's to send, its thread
        # does not exist here, and writing to the parent's socket would interleave lines.
        sock, wake = self._sock, self._wake
        self._spool.forget()  # the parent's file stays the parent's
        self._fresh_state()
        self._update_refusal()
        with contextlib.suppress(OSError):
            wake.close()  # the child's copies only, as below
            if sock is not None:
                sock.close()  # closes only the child's copy; the parent's stays connected

    # -- the caller's side --------------------------------------------------------------

    def track(self, event: str, properties: dict[str, Any] | None = None, **options: Any) -> None:
        """Queue one event for the daemon; never raises, never blocks.

        Options: `timestamp` (datetime or RFC 3339 text), `uuid`, `agent`, and the trace
        fields spans set (`trace_id`, `span_id`, `parent_span_id`); any other option drops
        the event as `invalid`.
        """
        if self._refuse:
            self._track_refused(event, properties, options)
            return
        # Kept in step with _enqueue(), inlined here: a method call is a third of the cost.
        # One level is copied: nested values are read when the writer encodes the event.
        # Finding them here would double what a call costs (README, "Sending events").
        try:
            if properties is not None:
                properties = (
                    properties.copy()
                    if type(properties) is dict
                    else _coerce_properties(properties)  # type: ignore[assignment]
                )
            queue = self.queue
            if len(queue) & 1023 == 1023:  # every NUDGE_EVERY calls, literal for speed
                self._backlog_check()
            queue.append((event, properties, time.time_ns(), options, self.agent))
            if self.idle:
                self._wake_writer()
        except Exception:
            self._count_caller_drop("invalid")

    def emit(self, event: Any, properties: Any, time_ns: int, options: dict[str, Any]) -> None:
        """Queue one event the shim made itself (a span's): `properties` is its own already.

        `time_ns` is when it happened (a span's start); never raises, never blocks.
        """
        if self._refuse:
            self._track_refused(event, properties, options, time_ns)
            return
        try:
            queue = self.queue
            if len(queue) & 1023 == 1023:  # as in track()
                self._backlog_check()
            queue.append((event, properties, time_ns, options, self.agent))
            if self.idle:
                self._wake_writer()
        except Exception:
            self._count_caller_drop("invalid")

    def _enqueue(
        self, event: Any, properties: Any, options: dict[str, Any], time_ns: int | None
    ) -> None:
        try:
            properties = _own_properties(properties)
            self._backlog_check()
            when = time.time_ns() if time_ns is None else time_ns
            self.queue.append((event, properties, when, options, self.agent))
            self._wake_writer()
        except Exception:
            self._count_caller_drop("invalid")

    def _track_refused(
        self, event: Any, properties: Any, options: dict[str, Any], time_ns: int | None = None
    ) -> None:
        reason = self._refuse
        if reason != "late":
            self._count_caller_drop(reason)  # type: ignore[arg-type]
            return
        if sys.is_finalizing():
            self._track_finalizing(event, properties, options, time_ns)
            return
        # After the exit flush nothing else will send this event: send (or spool) it now,
        # bounded. Past the budget it is counted instead: queued, it would wait for a flush
        # that never comes and go with the process uncounted.
        if self._late_budget <= 0 and not self._on_writer():
            self._count_writer_drop("exit_timeout")
            return
        self._enqueue(event, properties, options, time_ns)
        self._flush_late()

    def _track_finalizing(
        self, event: Any, properties: Any, options: dict[str, Any], time_ns: int | None
    ) -> None:
        """Deliver or spool one event from this thread, the writer being gone (_late.py)."""
        start = time.monotonic()
        drops = self._writer_drops  # no lock: a frozen writer may hold it
        if self._late_budget <= 0:
            drops["exit_timeout"] += 1
            return
        try:
            properties = _own_properties(properties)
            when = time.time_ns() if time_ns is None else time_ns
            line = self._encode((event, properties, when, options, self.agent))
        except Exception:
            line = "invalid"
        lines = [line] if type(line) is bytes else []
        if not lines:
            drops[line] += 1  # type: ignore[index]
        try:
            delta = self._unreported_drops(locked=False)
            control = encode_client_drops(delta, self.agent) if delta else None
            path = self.socket_path
            if not self.socket_path_given:
                with contextlib.suppress(Exception):  # else the last path worked out
                    path = str(ingest_socket_path())
            head = [control] if control is not None else []
            sent = send_lines(path, head + lines, start + self._late_budget)
            if control is not None and sent:
                self._mark_reported(delta)
                control, sent = None, sent - 1
            self.sent += sent
            rest = lines[sent:]
            if rest or control is not None:
                written, refused, reported = spool_lines(self.spool_dir, rest, control)
                self.spooled += written
                if refused is not None:
                    drops[refused] += len(rest) - written
                if reported:
                    self._mark_reported(delta)
        except Exception:
            drops["spool_failed"] += len(lines)  # neither delivered nor spooled
        finally:
            self._late_budget -= time.monotonic() - start

    def _count_caller_drop(self, reason: str) -> None:
        with self._caller_lock:
            self._caller_drops[reason] += 1

    def _count_writer_drop(self, reason: str) -> None:
        # A reason only the writer's table has (exit_timeout), counted from a caller.
        with self._state_lock:
            self._writer_drops[reason] += 1

    def _backlog_check(self) -> None:
        # Every NUDGE_EVERY events: let the writer encode what waits even in a backoff, and
        # keep room for the next NUDGE_EVERY calls under MAX_QUEUE by dropping the oldest.
        self._wake.set()
        with self._caller_lock:
            queue = self.queue
            for _ in range(len(queue) + NUDGE_EVERY - MAX_QUEUE):
                try:
                    queue.popleft()
                except IndexError:
                    return  # the writer emptied it meanwhile
                self._caller_drops["backlog_full"] += 1

    def _wake_writer(self) -> None:
        self.idle = False
        if self._writer is None:
            self._start_writer()
        self._wake.set()

    def _start_writer(self) -> None:
        # A bare thread, not a threading.Thread: Thread.start() waits until the new thread
        # runs, and that thread, once it has the GIL, may keep it for a whole switch
        # interval (5 ms) or more while it starts on the queue, so the first track() of a
        # process cost 0.3-25 ms on a loaded machine; this way it costs about what creating
        # a thread does. Like a daemon thread it never holds up the exit: the exit flush
        # (atexit) is what waits for it. The thread stores its own ident in `_writer`.
        token = object()
        try:
            if self._starter.setdefault("token", token) is not token:
                return  # another call starts it, or has started it
            _thread.start_new_thread(self._run, ())
        except BaseException as error:
            # No thread to be had (the interpreter shuts down), or an exception from a signal
            # handler, Ctrl-C's KeyboardInterrupt, between the token and the thread: a lock
            # kept here would leave this process without a writer for good. Let the next
            # call try again; should the thread have started after all, _run lets one run.
            if self._starter.get("token") is token:
                del self._starter["token"]
            self.idle = True
            if not isinstance(error, Exception):
                raise  # the caller's Ctrl-C is still the caller's
            return
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

    def stats(self) -> dict[str, Any]:
        """Counters for this process (`queued`, `sent`, `spooled`, `spool_files`, `dropped`,
        `drops` by reason, `connected`, `connect_failures`) and the settings in force
        (`disabled`, `agent`, `socket_path`, `spool_dir`)."""
        with self._caller_lock:
            caller = dict(self._caller_drops)
        with self._state_lock:
            writer = dict(self._writer_drops)
        drops = {
            "backlog_full": caller["backlog_full"] + writer["backlog_full"],
            "invalid": caller["invalid"] + writer["invalid"],
            "too_large": writer["too_large"],
            "spool_full": writer["spool_full"],
            "spool_failed": writer["spool_failed"],
            "exit_timeout": writer["exit_timeout"],
            "mode_off": writer["mode_off"],
            "disabled": caller["disabled"],
            "no_socket_path": caller["no_socket_path"],
        }
        return {
            "queued": self.pending(),
            "sent": self.sent,
            "spooled": self.spooled,
            "spool_files": self._spool.sealed,
            "dropped": sum(drops.values()),
            "drops": drops,
            "connected": self._sock is not None,
            "connect_failures": self.connect_failures,
            "disabled": self.disabled,
            "agent": self.agent,
            "socket_path": self.socket_path,
            "spool_dir": None if self.spool_dir is None else str(self.spool_dir),
        }
