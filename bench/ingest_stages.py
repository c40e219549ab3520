"""CPU per event of each step a shim's line takes through the daemon, in one process.

The lines are what the steady bench's agents send (`bench/steady.py`), encoded by the
real shim, and arrive in reads of READ_LINES lines, as ingest.sock takes them at
10,000 events/s from four agents every 10 ms. Each step runs over the whole set on the
output of the step before it, so its cost is measured alone; `accept_lines` runs them
all (with a writer that only keeps the rows), and `insert` is the writer thread's part:
the rows into a real buffer file, a transaction per group of GROUP_ROWS. The two turn
steps take the same lines as a turn reads them from four agents' connections (a read of
READ_LINES lines from each): read by read (`accept_lines`), and all at once
(`accept_turn`, as ingest.sock hands them over).

    .venv/bin/python -m bench.ingest_stages [--events N] [--repeat R]
    .venv/bin/python -m bench.ingest_stages --instructions [--events N]
    .venv/bin/python -m bench.ingest_stages --wal [--group N]

Each figure is the best of R runs (CPU time of this process), after a warm-up run that
fills the caches a running daemon has warm. Timings on a shared machine move with its
load; with `--instructions` each step runs once under callgrind instead, which counts
its instructions (as bench/otlp_instructions.py does: `os.getppid()` marks the steps).
With `--wal`, nothing is timed: the rows the turns make are committed GROUP at a time
into a real buffer file, as the writer commits a turn's rows, and the write-ahead log of
a few commits after a checkpoint is read back page by page, each page named by the table
or index it belongs to (SQLite's `dbstat`). A commit writes every page it changed whole,
so this is what each commit costs in WAL writes and checksums, and what the checkpointer
copies again later: a count that does not move with the machine's load.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from bench import fixtures

READ_LINES = 25
GROUP_ROWS = 100


def shim_reads(events: int, agents: int = 4) -> list[bytes]:
    """What ingest.sock reads: READ_LINES shim lines a read, the agents' lines interleaved
    as the steady bench makes them."""
    from agent_telemetry._wire import encode_event

    lines = []
    # From the start of a second: the lines' stamps (half a ms apart a round) stay in one
    # second up to 8,000 events, as most of a daemon's reads are, so what a step costs
    # does not depend on when in a second the bench ran.
    start_ns = time.time_ns() // 1_000_000_000 * 1_000_000_000
    for sent in range(events // agents):
        for agent in range(agents):
            properties = {
                "sent_ns": start_ns + sent * 400_000 + agent,
                "duration_ms": sent % 997,
                "model": "model-1",
                "tokens_in": sent % 4096,
                "status": "ok",
                "tool": "search",
            }
            lines.append(
                encode_event(
                    "tool.call",
                    properties,
                    agent=f"steady-{agent}",
                    now_ms=start_ns // 1_000_000 + sent // 2,
                )
            )
    return [b"".join(lines[i : i + READ_LINES]) for i in range(0, len(lines), READ_LINES)]


def turn_reads(
    reads: list[bytes], agents: int = 4, per_read: int = READ_LINES
) -> list[list[tuple[list[bytes], Any]]]:
    """The lines of `reads` as turns read them: each turn a read of `per_read` lines from
    each agent's connection (its lines in their order), with that connection's `Source`."""
    from agent_telemetryd.ingest import Source

    lines = [line for read in reads for line in read.split(b"\n")[:-1]]
    own = [lines[agent::agents] for agent in range(agents)]
    sources = [Source("unix", pid=1000 + agent) for agent in range(agents)]
    return [
        [(own[agent][start : start + per_read], sources[agent]) for agent in range(agents)]
        for start in range(0, len(own[0]), per_read)
    ]


def _mark() -> None:
    os.getppid()  # callgrind dumps its counters before each call (--dump-before)


def _best(fn: Callable[[], Any], repeat: int) -> float:
    fn()  # warm-up: the caches a running daemon has warm
    if repeat == 0:  # counted by callgrind: once, between two marks
        _mark()
        fn()
        _mark()
        return 0.0
    best = float("inf")
    for _ in range(repeat):
        start = time.process_time()
        fn()
        best = min(best, time.process_time() - start)
    return best


def stages(events: int, repeat: int) -> dict[str, float]:
    """µs of CPU per event of each step."""
    from agent_telemetryd.events import Limits, Validator, parse_line
    from agent_telemetryd.ingest import Source
    from agent_telemetryd.receivers.ndjson_socket import NdjsonProtocol
    from agent_telemetryd.store.database import open_buffer
    from agent_telemetryd.store.insert_rows import insert_rows

    reads = shim_reads(events)
    n = sum(read.count(b"\n") for read in reads)
    transforms = fixtures.default_transforms()
    kept: list[Any] = []
    ingestor = fixtures.collecting_ingestor(kept, transforms)
    source = Source("unix", pid=1234)
    split = [read.split(b"\n")[:-1] for read in reads]
    documents = [parse_line(line) for lines in split for line in lines]
    validate = Validator(Limits()).validate
    validated = [validate(dict(d)) for d in documents]
    results: dict[str, float] = {}

    def step(name: str, fn: Callable[[], Any]) -> None:
        results[name] = _best(fn, repeat) / n * 1e6

    step("split reads into lines", lambda: [read.split(b"\n") for read in reads])
    step("parse (orjson per line)", lambda: [parse_line(x) for lines in split for x in lines])
    step("validate", lambda: [validate(d) for d in documents])
    chain = validated
    for transform in transforms:
        current = chain
        step(
            f"transform {type(transform).__name__}",
            lambda t=transform, c=current: [t(e) for e in c],
        )
        chain = [transform(e) for e in current]
    step("properties to JSON", lambda: [orjson.dumps(e.properties).decode() for e in chain])

    def accept() -> None:
        kept.clear()
        for lines in split:
            ingestor.accept_lines(lines, source)

    step("accept_lines (all of the above but the split, and rows)", accept)
    protocol = NdjsonProtocol(ingestor, max_line_bytes=64 * 1024)
    protocol._source = source

    def receive() -> None:
        kept.clear()
        for read in reads:
            protocol.data_received(read)

    step("ingest.sock's data_received (split, line checks, accept_lines)", receive)
    turns = turn_reads(reads)

    def read_by_read() -> None:
        kept.clear()
        for turn in turns:
            for lines, agent_source in turn:
                ingestor.accept_lines(lines, agent_source)

    def turn_at_once() -> None:
        kept.clear()
        for turn in turns:
            ingestor.accept_turn(turn)

    step("a turn of 4 agents' reads, read by read (accept_lines)", read_by_read)
    step("the same turn at once (accept_turn)", turn_at_once)
    rows = list(kept)
    with tempfile.TemporaryDirectory(prefix="at-stages-") as tmp:
        conn = open_buffer(Path(tmp) / "buffer.sqlite3")
        # Fresh uuids for each run (made before the clock starts), or every run after the
        # first would insert nothing.
        copies = iter(
            [
                [row._replace(uuid=f"{row.uuid[:-4]}{run:04x}") for row in rows]
                for run in range(repeat + 2)
            ]
        )

        def insert() -> None:
            fresh = next(copies)
            for i in range(0, len(fresh), GROUP_ROWS):
                conn.execute("BEGIN IMMEDIATE")
                insert_rows(conn, fresh[i : i + GROUP_ROWS])
                conn.execute("COMMIT")

        step(f"insert (writer thread, {GROUP_ROWS} rows a commit)", insert)
        conn.close()
    return results


def _steady_rows(events: int) -> list[Any]:
    """The rows the daemon makes of the steady bench's lines, taken a turn at a time."""
    kept: list[Any] = []
    ingestor = fixtures.collecting_ingestor(kept, fixtures.default_transforms())
    for turn in turn_reads(shim_reads(events)):
        ingestor.accept_turn(turn)
    # A real install's anonymous id: as long as the one the buffer makes.
    return [row._replace(anonymous_id="7d9f1c1e-3b7a-4c55-9d0e-2f6a1b9c8e11") for row in kept]


def wal_pages(group: int, commits: int = 10) -> tuple[dict[str, float], float]:
    """WAL pages a commit of `group` rows writes, on average over `commits` commits
    after a checkpoint, by the table or index each page belongs to; and the bytes each
    row's record takes in the events table."""
    import struct

    from agent_telemetryd.store.database import open_buffer
    from agent_telemetryd.store.insert_rows import insert_rows

    warm = 150 * group  # a buffer with some history: its B-trees a few levels deep
    rows = _steady_rows(warm + commits * group)
    with tempfile.TemporaryDirectory(prefix="at-wal-") as tmp:
        path = Path(tmp) / "buffer.sqlite3"
        conn = open_buffer(path, autocheckpoint=False)
        for start in range(0, warm + commits * group, group):
            if start == warm:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            conn.execute("BEGIN IMMEDIATE")
            insert_rows(conn, rows[start : start + group])
            conn.execute("COMMIT")
        owner = dict(conn.execute("SELECT pageno, name FROM dbstat"))
        leaves = (
            "SELECT sum(pgsize - unused) FROM dbstat WHERE name = 'events' AND pagetype = 'leaf'"
        )
        stored = conn.execute("SELECT count(*) FROM events").fetchone()[0]
        record_bytes = conn.execute(leaves).fetchone()[0] / stored
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        wal = Path(f"{path}-wal").read_bytes()  # before close, which checkpoints it away
        conn.close()
    # The WAL's format: a 32-byte header, then frames of a 24-byte header (page number,
    # and the database size in pages on a commit's last frame) and the page.
    frame = 24 + page_size
    pages: dict[str, float] = {}
    for offset in range(32, len(wal) - frame + 1, frame):
        (number,) = struct.unpack_from(">I", wal, offset)
        # Page 1 holds the file's header (its change counter moves at every commit).
        name = "the file header (page 1)" if number == 1 else owner.get(number, "other")
        pages[name] = pages.get(name, 0) + 1 / commits
    return dict(sorted(pages.items(), key=lambda item: -item[1])), record_bytes


def instructions(events: int) -> dict[str, float]:
    """Instructions per event of each step, from a run of this module under callgrind."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise RuntimeError("valgrind is not installed")
    with tempfile.TemporaryDirectory(prefix="at-callgrind-") as tmp:
        out = Path(tmp) / "callgrind.out"
        subprocess.run(
            [valgrind, "--tool=callgrind", "--dump-before=os_getppid",
             f"--callgrind-out-file={out}", sys.executable, "-m", "bench.ingest_stages",
             "--events", str(events), "--repeat", "0", "--names", str(Path(tmp) / "names")],
            check=True, capture_output=True, env={**os.environ, "PYTHONHASHSEED": "0"},
        )  # fmt: skip
        names = (Path(tmp) / "names").read_text().splitlines()
        n = int(names.pop(0))
        # Two marks a step, before and after: step k (from 1) is dump 2k.
        return {
            name: fixtures.callgrind_total(Path(f"{out}.{2 * k}")) / n
            for k, name in enumerate(names, 1)
        }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ingest_stages")
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--instructions", action="store_true")
    parser.add_argument("--wal", action="store_true", help="WAL pages a commit writes")
    parser.add_argument("--group", type=int, default=200, help="rows a commit (--wal)")
    parser.add_argument("--names", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.wal:
        pages, record = wal_pages(args.group)
        print(f"a commit of {args.group} rows ({record:.0f} bytes of record each) writes")
        for name, count in pages.items():
            print(f"  {count:5.1f} pages of {name}")
        print(f"  {sum(pages.values()):5.1f} pages in all")
        return
    if args.instructions:
        for name, count in instructions(args.events).items():
            print(f"{name:<70} {count / 1000:7.1f}k instructions/event")
        return
    results = stages(args.events, args.repeat)
    if args.names is not None:  # the callgrind child: the steps' names, for the parent
        n = args.events // 4 * 4
        args.names.write_text("\n".join([str(n), *results]))
        return
    for name, micros in results.items():
        print(f"{name:<70} {micros:6.2f} µs/event")


if __name__ == "__main__":
    main()
