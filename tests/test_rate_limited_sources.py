"""What the rate limit holds back, per source, stays the same size however many sources and
events a runaway makes: `status` names the sources with the most and counts the rest, and
counting them per source does not hold memory per event."""

from __future__ import annotations

import _sqlite3
import ctypes
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agent_telemetryd.status import read_facts
from agent_telemetryd.store.database import open_buffer
from agent_telemetryd.store.migrations import SCHEMA_VERSION
from tests.conftest import DaemonFactory
from tests.fakes.http_backend import FakeHttpBackend
from tests.test_daemon_ingest import post_events
from tests.test_rate_shaping import uploading_daemon
from tests.test_store_upload_index import INSERT, _buffer_at


@pytest.fixture
def backend() -> Iterator[FakeHttpBackend]:
    fake = FakeHttpBackend().start()
    yield fake
    fake.stop()


def test_status_names_the_sources_holding_most_and_counts_the_others(
    daemon_factory: DaemonFactory, backend: FakeHttpBackend
) -> None:
    # One event a minute per source: 10 go now and 30 wait for all sources together.
    daemon = uploading_daemon(
        daemon_factory, backend, 'rate_limit = "1/min"\nrate_limit_backlog = 3\n'
    )
    # A name per run, as a program that names itself by its run would: one event each.
    events = [{"event": "agent.run.completed", "agent": f"run-{n:03}"} for n in range(300)]
    # And one source that kept sending: the most held back, named first.
    events += [{"event": "agent.step", "agent": "runaway"} for _ in range(5)]
    status, answer = post_events(daemon.http_url(), events)
    assert (status, answer["accepted"]) == (202, 305)

    # Under the limit on all sources together: the first 10 names go now, the next 30
    # wait, the other 260 and all of the runaway's events are kept local.
    status = daemon.status()
    limit = status["rate_limit"]
    assert (status["buffer"]["pending_upload"], status["buffer"]["rate_limited"]) == (40, 265)
    assert (limit["events"], limit["sources"]) == (30, 30)
    assert limit["by_source"] == {f"run-{n:03}": 1 for n in range(10, 30)}
    assert limit["rate_limited_sources"] == 261
    most = {"runaway": 5, **{f"run-{n:03}": 1 for n in range(40, 59)}}
    assert limit["rate_limited_by_source"] == most
    assert list(limit["rate_limited_by_source"]) == list(most)  # the most first
    assert status["upload"]["rate_limited_by_source"] == most

    lines = daemon.cli("status").stdout.splitlines()
    waiting = next(line for line in lines if line.startswith("waiting:"))
    kept = next(line for line in lines if line.startswith("rate limited:"))
    assert waiting.count("run-") == 20 and "run-029 1 and 10 more sources (" in waiting
    assert kept.startswith("rate limited: runaway 5, run-040 1, ")
    assert kept.count("run-") == 19 and "run-058 1 and 241 more sources (past" in kept


def _sqlite_memory() -> tuple[Callable[[], int], Callable[[int], int]]:
    """SQLite's own count of the bytes it holds, and its high-water mark (reset on each
    read), from the library Python's sqlite3 module runs on."""
    library = ctypes.CDLL(_sqlite3.__file__)
    library.sqlite3_memory_used.restype = ctypes.c_int64
    library.sqlite3_memory_highwater.restype = ctypes.c_int64
    library.sqlite3_memory_highwater.argtypes = [ctypes.c_int]
    return library.sqlite3_memory_used, library.sqlite3_memory_highwater


def _runaway_buffer(conn: sqlite3.Connection, events: int, sources: int) -> None:
    rows = ((f"u-{n}", n, n, f"run-{n % sources}", "rate_limited") for n in range(events))
    conn.execute("BEGIN")
    conn.executemany(INSERT, rows)
    conn.execute("COMMIT")


# The last version without the index of what is kept local, by source.
BEFORE_THE_INDEX = 15


@pytest.mark.parametrize("version", [SCHEMA_VERSION, BEFORE_THE_INDEX])
def test_counting_what_is_kept_local_per_source_holds_no_memory_per_event(
    tmp_path: Path, version: int
) -> None:
    """What `status` reads, over 600,000 events a runaway had kept local past its backlog
    under 60,000 names. Grouping them by a sort held ~18 MiB of SQLite memory for it, on
    every status call and dashboard load. (A buffer of the version before the index, read
    with the daemon down, is still answered the same.)"""
    path = tmp_path / "buffer.sqlite3"
    if version == SCHEMA_VERSION:
        conn = open_buffer(path)
    else:
        conn = _buffer_at(version, path)
        conn.execute("PRAGMA temp_store = MEMORY")  # as every connection of the daemon's
    _runaway_buffer(conn, 600_000, 60_000)
    used, highwater = _sqlite_memory()

    before = used()
    highwater(1)
    facts = read_facts(conn)
    held = highwater(1) - before

    if version == SCHEMA_VERSION:
        assert held < 4 * 1024 * 1024, f"{held / 2**20:.1f} MiB held to count by source"
    assert facts.rate_limited_sources == 60_000
    # All have 10: the first names, in order, stand for them.
    first = sorted(f"run-{n}" for n in range(60_000))[:20]
    assert facts.rate_limited_by_source == dict.fromkeys(first, 10)
