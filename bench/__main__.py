"""`python -m bench [--quick]`: every benchmark, one table, and bench/results.json.

    make bench                        # full sizes (tens of minutes on a 2-core machine)
    .venv/bin/python -m bench --quick # tiny sizes: checks the code, not the figures
    .venv/bin/python -m bench --only ingest,idle

A section that fails is reported as a row naming the error, and the others still run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from bench import (
    activation,
    external,
    growth,
    idle,
    ingest,
    otlp,
    overhead,
    spool,
    startup,
    steady,
)
from bench.report import Row, format_table

OWN: dict[str, Callable[..., list[Row]]] = {
    "overhead": overhead.run,
    "ingest": ingest.run,
    "growth": growth.run,
    "idle": idle.run,
    "startup": startup.run,
    "steady": steady.run,
    "activation": activation.run,
    "otlp": otlp.run,
    "spool": spool.run,
}
RESULTS = Path(__file__).resolve().parent / "results.json"


def machine() -> dict[str, str | int | None]:
    model = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = None
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f"{kb / 1024 / 1024:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory": memory,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke run)")
    parser.add_argument("--only", help="comma-separated sections, e.g. ingest,idle")
    parser.add_argument("--idle-seconds", type=float, help="how long to watch the idle daemon")
    parser.add_argument("--output", type=Path, default=RESULTS, help="where to write the JSON")
    args = parser.parse_args(argv)
    wanted = set(args.only.split(",")) if args.only else None
    sections: list[tuple[str, Callable[[], list[Row]]]] = []
    for name, fn in OWN.items():
        if name == "idle":
            sections.append((name, lambda fn=fn: fn(args.quick, args.idle_seconds)))
        else:
            sections.append((name, lambda fn=fn: fn(args.quick)))
    for name in external.available():
        sections.append((name, lambda name=name: external.run(name, args.quick)))
    rows: list[Row] = []
    started = time.time()
    for name, fn in sections:
        if wanted is not None and name not in wanted:
            continue
        print(f"bench: {name} ...", file=sys.stderr, flush=True)
        began = time.monotonic()
        try:
            rows.extend(fn())
        except Exception as error:
            traceback.print_exc(file=sys.stderr)
            rows.append(Row(name, "error", None, "", note=f"{type(error).__name__}: {error}"))
        print(f"bench: {name} took {time.monotonic() - began:.1f} s", file=sys.stderr)
    table = format_table(rows)
    print(table)
    args.output.write_text(
        json.dumps(
            {
                "command": "python -m bench" + (" --quick" if args.quick else ""),
                "quick": args.quick,
                "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
                "seconds": round(time.time() - started, 1),
                "machine": machine(),
                "rows": [row.as_dict() for row in rows],
                "table": table,
            },
            indent=2,
        )
        + "\n"
    )
    return 1 if any(row.name == "error" for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
