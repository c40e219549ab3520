"""Python span(): one event per span, with trace ids that follow the code's nesting."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from agent_telemetry._client import Client
from agent_telemetry._span import current_span, make_span
from tests.shim_listener import Listener

TRACE_ID = re.compile(r"[0-9a-f]{32}")
SPAN_ID = re.compile(r"[0-9a-f]{16}")


class Agent:
    """A client of its own pointed at a listener, and span() bound to it."""

    def __init__(self, listener: Listener, spool: Path) -> None:
        self.listener = listener
        self.client = Client()
        self.client.configure(socket_path=listener.path, spool_dir=spool)
        self.span = make_span(self.client)

    def events(self, count: int) -> dict[str, dict[str, Any]]:
        assert self.client.flush(5)
        events = self.listener.events(count)
        assert len(events) == count, events
        return {e["event"]: e for e in events}


@pytest.fixture
def agent() -> Iterator[Agent]:
    home = Path(tempfile.mkdtemp(prefix="at-", dir="/tmp"))
    listener = Listener(home / "ingest.sock")
    yield Agent(listener, home / "spool")
    listener.close()
    shutil.rmtree(home, ignore_errors=True)


def test_nested_sync_spans_share_the_trace_and_name_their_parent(agent: Agent) -> None:
    before_ms = time.time_ns() // 1_000_000
    with agent.span("agent.run", {"task": "summarise"}) as run:
        with agent.span("llm.call", {"model": "gpt-4o"}) as call:
            call.set("input_tokens", 812)
            time.sleep(0.02)
        with agent.span("tool.call", {"tool": "search"}):
            pass
    events = agent.events(3)
    root, llm, tool = events["agent.run"], events["llm.call"], events["tool.call"]

    assert TRACE_ID.fullmatch(root["trace_id"]) and SPAN_ID.fullmatch(root["span_id"])
    assert "parent_span_id" not in root
    assert (root["trace_id"], root["span_id"]) == (run.trace_id, run.span_id)
    for child in (llm, tool):
        assert child["trace_id"] == root["trace_id"]
        assert child["parent_span_id"] == root["span_id"]
        assert SPAN_ID.fullmatch(child["span_id"]) and child["span_id"] != root["span_id"]
    assert llm["properties"] == {
        "model": "gpt-4o",
        "input_tokens": 812,
        "duration_ms": llm["properties"]["duration_ms"],
    }
    # The event's time is the span's start; its length is duration_ms.
    assert llm["properties"]["duration_ms"] >= 20
    assert root["properties"]["duration_ms"] >= llm["properties"]["duration_ms"]
    start_ms = datetime.fromisoformat(root["timestamp"]).timestamp() * 1000
    assert before_ms <= start_ms <= datetime.fromisoformat(llm["timestamp"]).timestamp() * 1000
    assert "status" not in root["properties"]


def test_spans_in_concurrent_asyncio_tasks_get_their_own_parents(agent: Agent) -> None:
    span = agent.span

    async def tool(name: str, delay: float) -> str:
        async with span("tool.call", {"tool": name}) as outer:
            await asyncio.sleep(delay)  # the other task runs meanwhile
            async with span(f"tool.{name}.step", {}):
                await asyncio.sleep(0)
            return outer.span_id

    async def run() -> tuple[str, str, str]:
        async with span("agent.run") as root:
            ids = await asyncio.gather(tool("a", 0.02), tool("b", 0.01))
        assert current_span().span_id == ""  # nothing open once the run ended
        return root.span_id, ids[0], ids[1]

    root_id, a_id, b_id = asyncio.run(run())
    assert agent.client.flush(5)
    every = agent.listener.events(5)
    events = {e["event"]: e for e in every}
    trace = events["agent.run"]["trace_id"]
    assert {e["trace_id"] for e in every} == {trace}
    tools = {e["properties"]["tool"]: e for e in every if e["event"] == "tool.call"}
    assert tools["a"]["span_id"] == a_id and tools["b"]["span_id"] == b_id
    assert tools["a"]["parent_span_id"] == tools["b"]["parent_span_id"] == root_id
    assert events["tool.a.step"]["parent_span_id"] == a_id
    assert events["tool.b.step"]["parent_span_id"] == b_id


def test_an_exception_marks_the_span_with_its_type_only_and_goes_on_unchanged(
    agent: Agent,
) -> None:
    class QuotaExceeded(RuntimeError):
        pass

    canary = "canary-4f1d-user@example.com-sk-live-secret"
    raised = QuotaExceeded(canary)
    with pytest.raises(QuotaExceeded) as caught, agent.span("llm.call", {"model": "m"}):
        raise raised
    assert caught.value is raised
    assert agent.client.flush(5)
    assert agent.listener.wait_for(1)
    (line,) = agent.listener.lines
    assert canary.encode() not in line
    assert b"QuotaExceeded(" not in line
    event = json.loads(line)
    assert event["properties"]["status"] == "error"
    assert event["properties"]["error_type"] == "QuotaExceeded"


def test_the_decorator_works_on_sync_and_async_functions(agent: Agent) -> None:
    span = agent.span

    @span("tool.search", {"tool": "search"})
    def search(query: str) -> list[str]:
        current_span().set("query_chars", len(query))
        return [query.upper()]

    @span("llm.call")
    async def call(prompt: str) -> str:
        current_span().set("model", "m1")
        await asyncio.sleep(0)
        return prompt[::-1]

    @span
    def plain() -> int:
        return 7

    @span("tool.broken")
    async def broken() -> None:
        raise KeyError("secret-key-name")

    assert search("abc") == ["ABC"]
    assert asyncio.run(call("abc")) == "cba"
    assert plain() == 7
    with pytest.raises(KeyError):
        asyncio.run(broken())
    assert search.__name__ == "search" and call.__name__ == "call"
    events = agent.events(4)
    assert events["tool.search"]["properties"]["query_chars"] == 3
    assert events["llm.call"]["properties"]["model"] == "m1"
    name = "test_the_decorator_works_on_sync_and_async_functions.<locals>.plain"
    assert name in events
    assert events["tool.broken"]["properties"]["error_type"] == "KeyError"
    # Two calls of one decorated function are two spans, each a root here.
    assert len({e["trace_id"] for e in events.values()}) == 4


def test_each_call_of_a_decorated_function_is_its_own_span(agent: Agent) -> None:
    @agent.span("tool.step")
    def step(i: int) -> int:
        return i

    with agent.span("agent.run") as run:
        for i in range(3):
            step(i)
    assert agent.client.flush(5)
    lines = agent.listener.events(4)
    steps = [e for e in lines if e["event"] == "tool.step"]
    assert len(steps) == 3
    assert len({e["span_id"] for e in steps}) == 3
    assert {e["parent_span_id"] for e in steps} == {run.span_id}


class Unreadable(Mapping[str, Any]):
    def __getitem__(self, key: str) -> Any:
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        raise RuntimeError("cannot be read")

    def __len__(self) -> int:
        return 1


def test_span_with_no_daemon_never_raises_and_odd_input_is_counted(tmp_path: Path) -> None:
    client = Client()
    client.configure(socket_path=tmp_path / "nobody.sock", spool_dir=tmp_path / "spool")
    span = make_span(client)
    with span("agent.run") as s:
        s.set("ok", True)
    with span(123, {"a": 1}):  # type: ignore[arg-type]
        pass
    with span("agent.step", ["not", "a", "mapping"]) as bad:  # type: ignore[arg-type]
        bad.set("k", "v")
    with span("agent.step", Unreadable()):  # a mapping whose copy raises
        pass
    assert span("x")(42) == 42  # not a function: returned as is
    assert client.flush(5)
    stats = client.stats()
    assert stats["drops"]["invalid"] == 3
    assert stats["queued"] == 0


def test_current_span_outside_a_span_is_a_harmless_stand_in() -> None:
    detached = current_span()
    assert detached.set("k", "v") is detached
    assert detached.properties == {}


def test_one_span_object_entered_by_concurrent_tasks_gives_each_task_its_own_span(
    agent: Agent,
) -> None:
    tool_call = agent.span("tool.call")  # made once, as a module-level constant would be

    async def tool(name: str, delay: float) -> str:
        async with tool_call as s:
            s.set("tool", name)
            await asyncio.sleep(delay)  # the other task enters and leaves meanwhile
            return s.span_id

    async def run() -> tuple[str, list[str]]:
        async with agent.span("agent.run") as root:
            # The fast task enters first and leaves first, while the slow one is inside.
            ids = await asyncio.gather(tool("fast", 0.01), tool("slow", 0.2))
        return root.span_id, ids

    root_id, (fast_id, slow_id) = asyncio.run(run())
    assert agent.client.flush(5)
    events = agent.listener.events(3)
    tools = {e["properties"]["tool"]: e for e in events if e["event"] == "tool.call"}
    assert tools["slow"]["span_id"] == slow_id and tools["fast"]["span_id"] == fast_id
    assert tools["slow"]["parent_span_id"] == tools["fast"]["parent_span_id"] == root_id
    # The slow task's span lasted as long as the slow task, not until the fast one left.
    assert tools["slow"]["properties"]["duration_ms"] >= 200


def test_one_span_object_entered_by_two_threads_leaves_each_thread_clean(
    agent: Agent,
) -> None:
    tool_call = agent.span("tool.call")
    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()
    seen: dict[str, tuple[str, str, str | None]] = {}

    def worker(name: str, wait_for: threading.Event | None, done: threading.Event) -> None:
        if wait_for is not None:
            wait_for.wait()
        with tool_call as s:
            s.set("tool", name)
            done.set()
            (b_in if name == "a" else a_out).wait()  # a enters first and leaves first
        if name == "a":
            a_out.set()
        left_open = current_span().span_id
        with agent.span("after") as later:
            pass
        seen[name] = (s.span_id, left_open, later.parent_span_id)

    threads = [
        threading.Thread(target=worker, args=("a", None, a_in)),
        threading.Thread(target=worker, args=("b", a_in, b_in)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert agent.client.flush(5)
    events = agent.listener.events(4)
    tools = {e["properties"]["tool"]: e for e in events if e["event"] == "tool.call"}
    for name in ("a", "b"):
        span_id, left_open, parent = seen[name]
        assert tools[name]["span_id"] == span_id
        assert left_open == ""  # nothing is left open in the thread
        assert parent is None  # so a later span is a root, not the child of an ended one
    assert [e.get("parent_span_id") for e in events if e["event"] == "after"] == [None, None]


@pytest.mark.parametrize(
    ("leave", "status"),
    [
        ("sys.exit(0)", None),
        ("sys.exit()", None),
        ("sys.exit(False)", None),
        ("sys.exit(3)", "SystemExit"),
        ("sys.exit('message')", "SystemExit"),
    ],
)
def test_sys_exit_ends_a_span_as_an_error_only_with_a_failing_code(
    agent: Agent, leave: str, status: str | None
) -> None:
    with pytest.raises(SystemExit), agent.span("agent.run"):
        exec(leave, {"sys": sys})
    (event,) = agent.events(1).values()
    assert event["properties"].get("error_type") == status
    assert event["properties"].get("status") == ("error" if status else None)


def test_leaving_a_loop_over_a_generator_early_is_not_an_error(agent: Agent) -> None:
    def steps() -> Iterator[int]:
        for i in range(10):
            with agent.span("tool.step", {"i": i}):
                yield i

    for i in steps():
        if i == 1:
            break
    events = agent.events(2)
    assert events["tool.step"]["properties"]["i"] == 1  # closed inside its span
    for event in agent.listener.events():
        assert "status" not in event["properties"] and "error_type" not in event["properties"]


def test_an_exception_class_that_will_not_say_its_name_still_gives_the_span_event(
    agent: Agent,
) -> None:
    class Secretive(type):
        @property
        def __name__(cls) -> str:  # type: ignore[override]
            raise RuntimeError("no name for you")

    class Hidden(Exception, metaclass=Secretive):
        pass

    with pytest.raises(Hidden), agent.span("tool.call"):
        raise Hidden
    (event,) = agent.events(1).values()
    assert event["properties"]["status"] == "error"
    assert event["properties"]["error_type"] == "Exception"
