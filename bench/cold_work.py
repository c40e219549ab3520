"""What the same work costs the daemon after a pause: why a wake-up costs more than its code.

One turn of the daemon's own ingest step (`Ingestor.accept_turn` over four agents' reads
of LINES shim lines each, as ingest.sock hands them over) is run many times back to back,
then once after each pause of 1, 10 and 50 ms, as a turn runs after the machine did other
work or nothing. Each run is timed in this thread's CPU time, so what the pause costs
shows as CPU, not as waiting: the caches and branch predictors the run left warm are cold
again after the pause (and on a virtual machine the core may have run another guest).

    .venv/bin/python -m bench.cold_work [--lines 1,25] [--runs 200]

The daemon's steady rows follow from it: each wake-up costs what the pause-after figure
says (at 100 events/s from four agents it was once every event's, before their reads
shared the turns); at 10,000 events/s a turn's first lines pay it and the rest run warm.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

from bench import fixtures
from bench.ingest_stages import shim_reads, turn_reads

PAUSES = (0.0, 0.001, 0.010, 0.050)


def cpu_per_run(work: Callable[[], Any], pause: float, runs: int) -> float:
    """Median thread CPU µs of `work`, each run after `pause` seconds of sleep."""
    times = []
    for _ in range(runs):
        if pause:
            time.sleep(pause)
        start = time.thread_time_ns()
        work()
        times.append(time.thread_time_ns() - start)
    return statistics.median(times) / 1000


def measure(lines: int, runs: int) -> dict[float, float]:
    kept: list[Any] = []
    ingestor = fixtures.collecting_ingestor(kept, fixtures.default_transforms())
    turns = turn_reads(shim_reads(lines * 4 * 64), per_read=lines)
    position = 0

    def one_turn() -> None:
        nonlocal position
        kept.clear()
        ingestor.accept_turn(turns[position % len(turns)])
        position += 1

    for _ in range(50):  # warm-up: the shapes and texts it knows, as a running daemon does
        one_turn()
    return {pause: cpu_per_run(one_turn, pause, runs) for pause in PAUSES}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.cold_work")
    parser.add_argument("--lines", default="1,25", help="lines in each agent's read")
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    print(f"{'lines a read':>12} " + " ".join(f"{f'after {p * 1000:g} ms':>12}" for p in PAUSES))
    for lines in (int(n) for n in args.lines.split(",")):
        figures = measure(lines, args.runs)
        print(
            f"{lines:>12} "
            + " ".join(f"{figures[p]:>9.0f} µs" for p in PAUSES)
            + f"   ({figures[PAUSES[-1]] / figures[0.0]:.1f}x after {PAUSES[-1] * 1000:g} ms)"
        )


if __name__ == "__main__":
    main()
