"""The shim's public functions, called in this process as an agent would call them."""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest

import agent_telemetry
from agent_telemetry import configure, flush, stats, track
from agent_telemetry._client import Client
from tests.shim_listener import Listener


@pytest.fixture
def collector(monkeypatch: pytest.MonkeyPatch) -> Iterator[Listener]:
    monkeypatch.delenv("AGENT_TELEMETRY_DISABLED", raising=False)
    monkeypatch.delenv("AGENT_TELEMETRY_AGENT", raising=False)
    home = Path(tempfile.mkdtemp(prefix="at-", dir="/tmp"))
    path = home / "ingest.sock"
    server = Listener(path)
    configure(socket_path=path, spool_dir=home / "spool")
    yield server
    flush(1)
    server.close()
    # Nothing of this process's client may reach the user's own data dir, even at exit:
    # later calls are refused, and drop counts not yet reported are handed over here.
    configure(socket_path=home / "gone.sock", spool_dir=home / "spool", disabled=True)
    agent_telemetry._client._spool_rest(2)
    shutil.rmtree(home, ignore_errors=True)


def test_properties_are_copied_when_track_is_called(collector: Listener) -> None:
    props = {"step": 1}
    track("agent.step", props)
    props["step"] = 2
    props["later"] = True
    assert flush(2)
    (event,) = collector.events(1)
    assert event["properties"] == {"step": 1}


def test_any_mapping_is_accepted(collector: Listener) -> None:
    track("agent.step", MappingProxyType({"k": "v"}))
    assert flush(2)
    assert collector.events(1)[0]["properties"] == {"k": "v"}


def test_odd_input_never_raises_and_is_counted(collector: Listener) -> None:
    class Hostile(Mapping[str, Any]):
        def __getitem__(self, key: str) -> Any:
            raise RuntimeError("no")

        def __iter__(self) -> Iterator[str]:
            raise RuntimeError("no")

        def __len__(self) -> int:
            return 1

    looped: dict[str, Any] = {}
    looped["self"] = looped
    before = stats()["drops"]["invalid"]
    track(b"bytes")  # type: ignore[arg-type]
    track("agent.step", Hostile())
    track("agent.step", looped)
    track("agent.step", 42)  # type: ignore[arg-type]
    track("agent.step", {"deep": _nested(5_000)})
    track("agent.ok")
    assert flush(2)
    assert stats()["drops"]["invalid"] - before == 5
    assert [e["event"] for e in collector.events(1)] == ["agent.ok"]


def _nested(depth: int) -> Any:
    node: Any = 1
    for _ in range(depth):
        node = [node]
    return node


def test_configure_names_the_agent_and_can_disable(collector: Listener) -> None:
    configure(socket_path=collector.path, agent="planner")
    track("agent.step")
    configure(socket_path=collector.path, disabled=True)
    disabled_before = stats()["drops"]["disabled"]
    track("agent.hidden")
    assert stats()["drops"]["disabled"] == disabled_before + 1
    configure(socket_path=collector.path)  # back to the environment
    track("agent.shown")
    assert flush(2)
    names = [(e["event"], e["agent"]) for e in collector.events(2)]
    assert ("agent.step", "planner") in names
    assert "agent.hidden" not in {name for name, _ in names}
    assert ("agent.shown", "planner") not in names  # a fresh configure() forgets the override


def test_events_from_many_threads_all_arrive_whole(collector: Listener) -> None:
    def work(n: int) -> None:
        for i in range(2_000):
            track("agent.thread", {"thread": n, "i": i})

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert flush(5)
    events = collector.events(8_000)
    assert len(events) == 8_000
    assert len({e["uuid"] for e in events}) == 8_000


def test_track_with_no_daemon_queues_every_call_without_raising(tmp_path: Path) -> None:
    # What a call costs in that state is measured in bench/ (overhead, "daemon down").
    # A client of its own: nobody will take these events, and they must not reach a later
    # test's socket through the module's client.
    client = Client()
    client.configure(socket_path=tmp_path / "nobody.sock", spool_dir=tmp_path / "spool")
    for i in range(20_000):
        client.track("agent.step", {"i": i})
    s = client.stats()
    assert s["connected"] is False
    assert s["queued"] + s["sent"] + s["spooled"] + s["dropped"] == 20_000


def test_stats_has_the_documented_keys() -> None:
    s = stats()
    assert {"queued", "sent", "spooled", "spool_files", "dropped", "drops"} <= s.keys()
    assert s["drops"].keys() == {
        "backlog_full",
        "invalid",
        "too_large",
        "spool_full",
        "spool_failed",
        "exit_timeout",
        "mode_off",
        "disabled",
        "no_socket_path",
    }
    assert s["dropped"] == sum(s["drops"].values())


def test_stats_and_flush_from_a_signal_handler_during_stats_do_not_deadlock(
    collector: Listener,
) -> None:
    """A handler that runs while this thread is inside stats() may call stats() again."""
    import signal

    calls = []

    def handler(signum: int, frame: object) -> None:
        calls.append(stats()["sent"])
        track("agent.from_handler")

    previous = signal.signal(signal.SIGALRM, handler)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.0001, 0.0001)
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            stats()
            track("agent.step")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert calls
    assert flush(5)


def test_nested_values_are_read_when_the_event_is_encoded() -> None:
    """Documented: one level is copied at the call; deeper containers are not (see README)."""
    client = Client()  # never started: nothing is encoded until flush
    client.idle = False
    nested = {"tools": ["search"]}
    client.track("agent.step", nested)
    nested["later"] = True  # the top level was copied
    ((_, properties, *_),) = client.queue
    assert properties == {"tools": ["search"]}
    assert properties["tools"] is nested["tools"]  # the same list: not copied
    client.queue.clear()  # nothing for its exit flush to send, or spool


def test_public_names() -> None:
    assert set(agent_telemetry.__all__) >= {"track", "flush", "stats", "configure", "uuid7"}


def test_properties_that_could_never_fit_are_refused_without_being_encoded(
    collector: Listener,
) -> None:
    """The writer shares the GIL with the agent: encoding millions of items there would
    hold up the agent's next calls. Such properties are refused from their size alone."""
    encoded: list[bool] = []

    class Watched(dict):  # type: ignore[type-arg]
        def items(self) -> Any:  # the encoder reads a dict subclass through items()
            encoded.append(True)
            return super().items()

    before = stats()["drops"]["too_large"]
    track("agent.huge", {"lst": [Watched(a=1), *range(2_000_000)]})
    track("agent.many", {f"l{i}": list(range(200)) for i in range(100)})  # 20,000 in all
    track("agent.after", {"ok": True})
    assert flush(5)
    assert [e["event"] for e in collector.events(1)] == ["agent.after"]
    assert stats()["drops"]["too_large"] - before == 2
    assert encoded == []
