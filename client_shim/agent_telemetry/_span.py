"""Spans: a timed unit of work that becomes one event when it ends.

    with span("agent.run", {"task": "summarise"}) as run:
        with span("llm.call", {"model": "gpt-4o"}) as call:
            call.set("input_tokens", 812)

Nesting follows `contextvars`, so a span opened in one asyncio task is the parent of the
spans its child tasks open, and concurrent tasks never see each other's spans. A span costs
what one `track()` costs: ids come from the shim's seeded generator, the clock is read at
both ends, and everything else happens on the writer thread.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import os
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from agent_telemetry import _wire
from agent_telemetry._writer import INVALID, SPAN_IDS

if TYPE_CHECKING:
    from agent_telemetry._client import Client

F = TypeVar("F", bound=Callable[..., Any])

_current: contextvars.ContextVar[Span | None] = contextvars.ContextVar(
    "agent_telemetry_span", default=None
)
# Bumped in a forked child. A span is ended only by the process that started it: a child
# leaving through sys.exit() inside the parent's `with span()` would otherwise send
# another copy of the parent's span. A counter, not os.getpid(): reading it costs nothing.
_process_generation = 0


def _after_fork_in_child() -> None:
    global _process_generation
    _process_generation += 1


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class Span:
    """An open span: its ids, and the properties its event will carry."""

    __slots__ = (
        "_generation",
        "_parent",
        "_scope",
        "_span",
        "_start_ns",
        "_start_perf",
        "_token",
        "_trace",
        "name",
        "properties",
    )

    def __init__(
        self, name: str, properties: Any, parent: Span | None, scope: object = None
    ) -> None:
        self.name = name
        self.properties = properties
        self._scope = scope  # the span() that opened it
        self._token: contextvars.Token[Span | None] | None = None
        self._generation = _process_generation
        # Ids are kept as numbers and written as hex by the writer thread: formatting them
        # here would be a third of what a span costs the caller.
        bits = _wire._random_bits
        if parent is None:
            # W3C trace context: an id of all zeros is invalid; `or 1` keeps the odds honest.
            self._trace: int = bits(128) or 1
            self._parent: int | None = None
        else:
            self._trace = parent._trace
            self._parent = parent._span
        self._span: int = bits(64) or 1
        self._start_ns = time.time_ns()
        self._start_perf = time.perf_counter_ns()

    @property
    def trace_id(self) -> str:
        """32 lowercase hex digits, shared by every span of one run."""
        return f"{self._trace:032x}"

    @property
    def span_id(self) -> str:
        """16 lowercase hex digits."""
        return f"{self._span:016x}"

    @property
    def parent_span_id(self) -> str | None:
        """The enclosing span's id; None for a root span."""
        return None if self._parent is None else f"{self._parent:016x}"

    def set(self, key: str, value: Any) -> Span:
        """Add or replace one property of the span's event; never raises. Returns the span."""
        # Properties that were not a mapping refuse it: the event is counted as invalid.
        with contextlib.suppress(Exception):
            self.properties[key] = value
        return self

    def __repr__(self) -> str:
        return f"<Span {self.name!r} trace_id={self.trace_id} span_id={self.span_id}>"


class _Detached(Span):
    """What current_span() gives outside any span: no ids, and set() goes nowhere."""

    def __init__(self) -> None:
        self.name = ""
        self.properties = {}
        self._trace = self._span = 0
        self._parent = None
        self._scope = self._token = None

    @property
    def trace_id(self) -> str:
        return ""

    @property
    def span_id(self) -> str:
        return ""

    def set(self, key: str, value: Any) -> Span:
        return self


_DETACHED = _Detached()


def current_span() -> Span:
    """The innermost open span in this context, or a stand-in whose set() does nothing."""
    return _current.get() or _DETACHED


class SpanScope:
    """What span() returns: a context manager (sync and async) and a decorator.

    One object may be entered again before it exits, by nested code, concurrent asyncio
    tasks or threads (`TOOL = span("tool.call")` at module level): each entry is a span of
    its own, and an exit ends the span this context entered, found through `contextvars`
    as nesting is.
    """

    __slots__ = ("_client", "_name", "_open", "_properties")

    def __init__(self, client: Client, name: Any, properties: Any) -> None:
        self._client = client
        self._name = name
        self._properties = properties
        # Spans entered and not yet exited, in any context: for an exit that comes in
        # another context than its entry (an async generator closed elsewhere).
        self._open: list[Span] = []

    # -- context manager ------------------------------------------------------------------

    def __enter__(self) -> Span:
        return self._start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, *_: object
    ) -> bool:
        self._end(exc_type, exc)
        return False  # the exception, if any, goes on unchanged

    async def __aenter__(self) -> Span:
        return self._start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, *_: object
    ) -> bool:
        self._end(exc_type, exc)
        return False

    def _start(self) -> Span:
        try:
            properties = self._properties
            if properties is None:
                properties = {}
            elif type(properties) is dict:
                properties = properties.copy()
            elif isinstance(properties, Mapping):
                try:
                    properties = dict(properties)
                except Exception:
                    # A mapping that cannot be read (a getter that raises): the span still
                    # runs, and its event is counted as invalid, as track() counts one.
                    properties = INVALID
            else:
                properties = INVALID  # counted as invalid when it is encoded
            span = Span(self._name, properties, _current.get(), self)
            span._token = _current.set(span)
            self._open.append(span)
            return span
        except Exception:
            return _DETACHED

    def _end(self, exc_type: type[BaseException] | None, exc: BaseException | None) -> None:
        try:
            span = _current.get()
            if span is None or span._scope is not self:
                # Not the innermost span here: exited in another context than it was
                # entered, or out of order. The latest entry is the best guess.
                span = self._open[-1]
            self._open.remove(span)
        except Exception:
            return  # never started (or ended twice)
        try:
            elapsed = time.perf_counter_ns() - span._start_perf
            try:
                _current.reset(span._token)  # type: ignore[arg-type]
            except ValueError:
                # Ended in another context than it began (e.g. an async generator finalised
                # elsewhere): leave that context as its own code set it, unless we are on top.
                if _current.get() is span:
                    _current.set(None)
            if span._generation != _process_generation:
                return  # started by the parent of this forked process: the parent ends it
            properties = span.properties
            if type(properties) is dict:
                properties["duration_ms"] = round(elapsed / 1_000_000, 3)
                if exc_type is not None and _failed(exc_type, exc):
                    # The type only: an exception's message may hold user data.
                    properties["status"] = "error"
                    properties["error_type"] = _type_name(exc_type)
            options = {SPAN_IDS: (span._trace, span._span, span._parent)}
            self._client.emit(self._name, properties, span._start_ns, options)
        except Exception:
            # The span's event cannot be made: counted, like any event the shim refuses.
            with contextlib.suppress(Exception):
                self._client._count_caller_drop("invalid")

    # -- decorator ------------------------------------------------------------------------

    def __call__(self, fn: F) -> F:
        """Wrap a function or a coroutine function: each call is a span of its own.

        A generator's span would cover only the call that makes the generator; open the
        span inside it instead. Anything that cannot be wrapped is returned as it is.
        """
        if not callable(fn):
            return fn
        client, name, properties = self._client, self._name, self._properties
        try:
            import inspect  # here, not at the top: it costs every agent ~10 ms to import

            if inspect.iscoroutinefunction(fn):

                @functools.wraps(fn)
                async def run_async(*args: Any, **kwargs: Any) -> Any:
                    async with SpanScope(client, name, properties):
                        return await fn(*args, **kwargs)

                return run_async  # type: ignore[return-value]

            @functools.wraps(fn)
            def run(*args: Any, **kwargs: Any) -> Any:
                with SpanScope(client, name, properties):
                    return fn(*args, **kwargs)

            return run  # type: ignore[return-value]
        except Exception:
            return fn


def _failed(exc_type: type[BaseException], exc: BaseException | None) -> bool:
    """Whether leaving a span with this exception is a failure.

    `sys.exit()`, `sys.exit(0)` and a generator closed early (a `for` loop left by `break`
    raises GeneratorExit inside it) are how code ends normally, not errors.
    """
    if issubclass(exc_type, GeneratorExit):
        return False
    if issubclass(exc_type, SystemExit):
        code = getattr(exc, "code", None)
        return not (code is None or code == 0)
    return True


def _type_name(exc_type: type[BaseException]) -> str:
    """The exception's class name; "Exception" when the class will not say (a metaclass
    whose `__name__` raises, or is not text)."""
    try:
        name = exc_type.__name__
    except Exception:
        return "Exception"
    return name if type(name) is str and name else "Exception"


def make_span(client: Client) -> Callable[..., Any]:
    """The module-level span() bound to the process's client."""

    def span(name: Any, properties: Mapping[str, Any] | None = None) -> Any:
        """A span named `name`: `with span(...) as s:`, `async with`, or `@span(...)`.

        When it ends it emits one event with `timestamp` = its start, `duration_ms`, its
        trace ids, and on an exception `status: "error"` and the exception's type name (never
        its message); the exception goes on unchanged. `@span` alone names the span after
        the function. Never raises.
        """
        if callable(name) and properties is None and not isinstance(name, str):
            fn = name  # bare @span
            label = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", "span")
            return SpanScope(client, label, None)(fn)
        return SpanScope(client, name, properties)

    return span
