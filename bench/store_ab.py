"""What storing an event costs, this tree against another revision, in one run.

On a machine shared with other work, only comparisons made within one run hold: each
figure here is this tree's and `REV`'s, measured alternately.

    .venv/bin/python -m bench.store_ab --against REV [--rounds 3] [--seconds 20]
    .venv/bin/python -m bench.store_ab --against REV --instructions [--group 100]
    .venv/bin/python -m bench.store_ab --against REV --executemany [--rounds 5]
    .venv/bin/python -m bench.store_ab --against REV --ingest [--rounds 3] [--producers 1,4,16]

The first runs a fresh daemon of each tree (its own code first on its path, from `git
archive`) under the steady bench's 10,000 events/s from four shim processes, and gives
the daemon's CPU share of a core and the part of it outside the event loop's thread
(the buffer's writer and checkpointer, mostly). The second counts, with callgrind, the
instructions per row of the writer's group commit (`GroupCommit.commit`: the multi-row
INSERT, counters, size check, WAL bookkeeping, and the checkpointer thread's share)
for the bench's plain rows, GROUP rows a transaction as at 10,000 events/s, into a fresh
buffer of each tree's schema. The third times plain `executemany` of the same rows, 100
a transaction, into a fresh buffer of each tree's schema (CPU time of a child process
per run, the trees alternating): the anchor the steady bench divides by. The fourth
runs a daemon of each tree in turn and has 1, 4 and 16 producer processes each send
200,000 shim lines to ingest.sock as fast as it takes them, as the ingest bench does: the
events/s committed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from statistics import median

ROWS = 10_000


def _export(revision: str, into: Path) -> None:
    root = Path(__file__).resolve().parent.parent
    archive = subprocess.run(
        ["git", "-C", str(root), "archive", revision, "daemon", "client_shim"],
        check=True,
        capture_output=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)


def _trees(revision: str, tmp: Path) -> dict[str, Path]:
    tmp.mkdir(parents=True, exist_ok=True)
    _export(revision, tmp)
    return {revision: tmp, "this tree": Path(__file__).resolve().parent.parent}


def _alternating(trees: dict[str, Path], rounds: int) -> Iterator[str]:
    """The trees' names, `rounds` times, every other round in reverse: neither tree is
    always first, when the machine may still be busy from what ran before."""
    for index in range(rounds):
        yield from (list(trees) if index % 2 == 0 else list(trees)[::-1])


def _path(tree: Path) -> str:
    return os.pathsep.join(str(tree / part) for part in ("daemon", "client_shim"))


def daemons(revision: str, rounds: int, seconds: float, rate: float) -> None:
    from bench import fixtures
    from bench.steady import window_run

    with tempfile.TemporaryDirectory(prefix="at-store-ab-") as tmp:
        trees = _trees(revision, Path(tmp))
        found: dict[str, list[tuple[float, float]]] = {name: [] for name in trees}
        for name in _alternating(trees, rounds):
            env = {"AGENT_TELEMETRY_HTTP_PORT": "off", "PYTHONPATH": _path(trees[name])}
            with fixtures.daemon(env) as proc:
                figures = window_run(proc, rate, seconds)
            cpu, loop = figures["cpu_share"], figures["loop_share"]
            found[name].append((cpu, cpu - loop))
            print(
                f"{name}: cpu {cpu * 100:.1f}%, outside the loop thread"
                f" {(cpu - loop) * 100:.1f}%, p99 {figures['p99_ms']:.0f} ms,"
                f" {figures['wakeups_per_s']:.0f} wake-ups a second",
                flush=True,
            )
    for name, values in found.items():
        cpu = median(v[0] for v in values) * 100
        rest = median(v[1] for v in values) * 100
        print(f"{name}: median cpu {cpu:.1f}%, outside the loop thread {rest:.1f}%")


def ingest(revision: str, rounds: int, producers: list[int], total: int = 200_000) -> None:
    from bench import fixtures
    from bench.ingest import socket_run

    with tempfile.TemporaryDirectory(prefix="at-store-ab-") as tmp:
        trees = _trees(revision, Path(tmp))
        found: dict[tuple[str, int], list[float]] = {
            (name, n): [] for name in trees for n in producers
        }
        for name in _alternating(trees, rounds):
            with fixtures.daemon({"PYTHONPATH": _path(trees[name])}) as proc:
                for n in producers:
                    rate = socket_run(proc, n, total)
                    found[(name, n)].append(rate)
                    print(f"{name}: {_producers(n)}, {rate:,.0f} events/s", flush=True)
    for (name, n), values in found.items():
        print(f"{name}: {_producers(n)}, median {median(values):,.0f} events/s")


def _producers(n: int) -> str:
    return f"{n} producer{'s' if n > 1 else ''}"


def instructions(revision: str, group: int) -> None:
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise RuntimeError("valgrind is not installed")
    with tempfile.TemporaryDirectory(prefix="at-store-ab-") as tmp:
        trees = _trees(revision, Path(tmp) / "tree")
        for name, tree in trees.items():
            out = Path(tmp) / f"callgrind-{len(name)}.out"
            subprocess.run(
                [valgrind, "--tool=callgrind", "--dump-before=os_getppid",
                 f"--callgrind-out-file={out}", sys.executable, "-m", "bench.store_ab",
                 "--child", "--group", str(group)],
                check=True, capture_output=True, cwd=Path(__file__).resolve().parent.parent,
                env={**os.environ, "PYTHONPATH": _path(tree), "PYTHONHASHSEED": "0"},
            )  # fmt: skip
            from bench.fixtures import callgrind_total

            total = callgrind_total(Path(f"{out}.2"))
            print(f"{name}: {total / ROWS / 1000:.1f}k instructions a row ({group} a commit)")


def executemany(revision: str, rounds: int, group: int) -> None:
    with tempfile.TemporaryDirectory(prefix="at-store-ab-") as tmp:
        trees = _trees(revision, Path(tmp) / "tree")
        found: dict[str, list[float]] = {name: [] for name in trees}
        for name in _alternating(trees, rounds):
            done = subprocess.run(
                [sys.executable, "-m", "bench.store_ab", "--child-executemany",
                 "--group", str(group)],
                check=True, capture_output=True, text=True,
                cwd=Path(__file__).resolve().parent.parent,
                env={**os.environ, "PYTHONPATH": _path(trees[name])},
            )  # fmt: skip
            found[name].append(float(done.stdout))
        for name, values in found.items():
            shown = ", ".join(f"{v:.2f}" for v in values)
            print(f"{name}: executemany {median(values):.2f} µs CPU a row (median of {shown})")


def _child_executemany(group: int) -> None:
    """Print the CPU µs a row of executemany into a fresh buffer, GROUP rows a commit."""
    import time

    from agent_telemetryd.store.database import open_buffer
    from agent_telemetryd.store.rows import INSERT_EVENT
    from bench import fixtures

    with tempfile.TemporaryDirectory(prefix="at-store-ab-") as tmp:
        conn = open_buffer(Path(tmp) / "buffer.sqlite3")
        warm, measured = (list(fixtures.buffer_rows(ROWS * 5, upload="local")) for _ in range(2))
        for rows, timed in ((warm, False), (measured, True)):
            start = time.process_time()
            for i in range(0, len(rows), group):
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany(INSERT_EVENT, rows[i : i + group])
                conn.execute("COMMIT")
            if timed:
                print((time.process_time() - start) / len(rows) * 1e6)
        conn.close()


def _child(group: int) -> None:
    """Under callgrind: ROWS rows through the writer's group commit, GROUP a transaction, after a
    warm-up of as many; `os.getppid()` marks the measured part."""
    from agent_telemetryd.store.buffer import Buffer
    from agent_telemetryd.store.rows import EventRow
    from agent_telemetryd.store.write_requests import WriteRequest
    from bench import fixtures

    async def run() -> None:
        with tempfile.TemporaryDirectory(prefix="at-store-ab-") as tmp:
            buffer = await Buffer.open(
                Path(tmp) / "buffer.sqlite3",
                max_events=10**8,
                max_bytes=10**12,
                retention_days=9999,
            )
            writer = buffer.writer
            # The group commit is a class of its own since it left writer.py; an older
            # revision has it as the writer's method.
            group_commit = getattr(writer, "_group", None)
            commit_group = group_commit.commit if group_commit else writer._commit

            def commit(rows: list[EventRow]) -> None:
                for i in range(0, len(rows), group):
                    request = WriteRequest(rows[i : i + group], {"received": group}, None, {})
                    commit_group([request])

            warm, measured = (
                [EventRow(*row) for row in fixtures.buffer_rows(ROWS, upload="local")]
                for _ in range(2)
            )
            commit(warm)
            os.getppid()
            commit(measured)
            os.getppid()
            await buffer.close()

    asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.store_ab")
    parser.add_argument("--against", default="HEAD")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rate", type=float, default=10_000)
    parser.add_argument("--group", type=int, default=100)
    parser.add_argument("--instructions", action="store_true")
    parser.add_argument("--executemany", action="store_true")
    parser.add_argument("--ingest", action="store_true")
    parser.add_argument("--producers", default="1,4,16")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--child-executemany", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.group)
    elif args.child_executemany:
        _child_executemany(args.group)
    elif args.executemany:
        executemany(args.against, args.rounds, args.group)
    elif args.instructions:
        instructions(args.against, args.group)
    elif args.ingest:
        ingest(args.against, args.rounds, [int(n) for n in args.producers.split(",")])
    else:
        daemons(args.against, args.rounds, args.seconds, args.rate)


if __name__ == "__main__":
    main()
