"""OTLP: instructions per span of each step a span takes in the daemon, counted by callgrind.

Timings on a shared machine move with its load; instruction counts do not. This drives
the steps the OTLP/HTTP receiver runs for a request body (decode and map, the ingestor's
validation and privacy transforms and rows, the writer's insert into a real buffer file)
for fixed bodies of 512 spans of 20 attributes, in one process, and has callgrind count
each step on its own: `os.getppid()` marks the boundaries, and callgrind dumps its
counters before every call to it (`--dump-before=os_getppid`), so each dump holds exactly
one step's instructions.

    .venv/bin/python -m bench.otlp_instructions          # runs itself under valgrind

The caches a daemon has warm after its first requests (names, keys, seconds) are warmed
by one body that is not counted.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench import fixtures

BODIES = 3  # counted, after one that warms the caches
STEPS = ("decode", "ingest", "insert")
LABELS = {
    "decode": "decode + map + content mask + checks (otlp/, receiver)",
    "ingest": "ingest: transforms, rows (ingest.py, privacy/)",
    "insert": "insert and commit (SQLite)",
}


def _mark() -> None:
    os.getppid()  # callgrind dumps its counters before each call (see the docstring)


def child(workdir: Path) -> None:
    """The measured process: warm up on one body, then mark every step of BODIES more."""
    from agent_telemetryd.events import Limits
    from agent_telemetryd.ingest import Source
    from agent_telemetryd.otlp.decode import PROTOBUF, decode
    from agent_telemetryd.otlp.event_checks import EventChecks
    from agent_telemetryd.otlp.signals import TRACES
    from agent_telemetryd.receivers.otlp_export import OtlpState, hand_over
    from agent_telemetryd.store.database import open_buffer
    from agent_telemetryd.store.insert_rows import insert_rows
    from bench.otlp import span_batches

    bodies = span_batches(BODIES + 1, seed=7)
    conn = open_buffer(workdir / "buffer.sqlite3")
    rows: list[Any] = []
    ingestor = fixtures.collecting_ingestor(rows)
    state = OtlpState()
    checks = EventChecks(Limits())
    source = Source("otlp")
    spans = 0
    for index, body in enumerate(bodies):
        counted = index > 0
        if counted:
            _mark()
        # As the receiver does: receivers/otlp_export.decode_off_loop, then commit.
        decoded = decode(TRACES, body, PROTOBUF, checks, state.mask)
        if counted:
            _mark()
        _, resources = hand_over(ingestor, state, decoded, source)
        state.recorded(resources)
        if counted:
            _mark()
        conn.execute("BEGIN IMMEDIATE")
        insert_rows(conn, rows)  # as the writer inserts a group
        conn.execute("COMMIT")
        if counted:
            _mark()
            spans += decoded.items
        rows.clear()
    (workdir / "spans").write_text(str(spans))


def measure() -> dict[str, float]:
    """Instructions per span of each step, from a child run under callgrind."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise RuntimeError("valgrind is not installed")
    with tempfile.TemporaryDirectory(prefix="at-callgrind-") as tmp:
        work = Path(tmp)
        out = work / "callgrind.out"
        subprocess.run(
            [valgrind, "--tool=callgrind", "--dump-before=os_getppid",
             f"--callgrind-out-file={out}", sys.executable, "-m", "bench.otlp_instructions",
             "--child", str(work)],
            check=True, capture_output=True, env={**os.environ, "PYTHONHASHSEED": "0"},
        )  # fmt: skip
        spans = int((work / "spans").read_text())
        # Dump n holds what ran since the mark before the n-th: each body has four marks,
        # before each of its three steps and after the last, so its steps are the dumps
        # 4b+2, 4b+3 and 4b+4 (dump 1 is start-up and warm-up, 4b+1 the loop between).
        steps = dict.fromkeys(STEPS, 0.0)
        for body in range(BODIES):
            for offset, step in enumerate(STEPS, start=2):
                steps[step] += fixtures.callgrind_total(work / f"callgrind.out.{4 * body + offset}")
    return {step: count / spans for step, count in steps.items()}


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        child(Path(sys.argv[2]))
        return
    steps = measure()
    for step, count in steps.items():
        print(f"{LABELS[step]:<60} {count / 1000:8.1f}k instructions per span")
    print(f"{'all':<60} {sum(steps.values()) / 1000:8.1f}k")


if __name__ == "__main__":
    main()
