"""Idle: resident memory, CPU time and wake-ups of a daemon that is given nothing to do.

Wake-ups are context switches summed over every thread (`/proc/PID/task/*/status`):
a polling loop anywhere shows up as a steady rate. The anchor is a bare interpreter
sleeping for the same time, measured the same way.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from bench import fixtures
from bench.report import Row

SECTION = "idle"
SETTLE = 2.0
_TICK = os.sysconf("SC_CLK_TCK")
# What the daemon imports from outside the standard library, loaded and left idle: the
# floor under the daemon's RSS that no change to its own code can move.
DEPENDENCIES = (
    "asyncio, aiohttp.web, apscheduler.schedulers.asyncio, click, orjson, platformdirs, structlog"
)


def sample(pid: int) -> dict[str, float]:
    """RSS (MB), CPU seconds, and context switches of every thread of `pid`."""
    rss_kb = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss_kb = int(line.split()[1])
    switches = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            text = (task / "status").read_text()
        except OSError:
            continue  # the thread ended meanwhile
        for line in text.splitlines():
            if line.startswith(("voluntary_ctxt_switches:", "nonvoluntary_ctxt_switches:")):
                switches += int(line.split()[1])
    # Fields after the command name (which may hold spaces): utime and stime are 14 and 15.
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(stat[11]) + int(stat[12])) / _TICK
    return {"rss_mb": rss_kb / 1024, "cpu_s": cpu, "switches": switches}


def run(quick: bool, seconds: float | None = None) -> list[Row]:
    seconds = seconds if seconds is not None else (10.0 if quick else 60.0)
    bare = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
    deps = subprocess.Popen(
        [sys.executable, "-c", f"import {DEPENDENCIES}, time; time.sleep(3600)"]
    )
    try:
        with fixtures.daemon() as proc:
            assert proc.proc is not None
            # Both watched over the same seconds, so a busy moment on the machine hits both.
            time.sleep(SETTLE)
            start_d, start_b = sample(proc.proc.pid), sample(bare.pid)
            time.sleep(seconds)
            end_d, end_b = sample(proc.proc.pid), sample(bare.pid)
            floor_mb = sample(deps.pid)["rss_mb"]
    finally:
        for anchor in (bare, deps):
            anchor.kill()
            anchor.wait()

    def figures(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
        return {
            "rss_mb": b["rss_mb"],
            "cpu_ms": (b["cpu_s"] - a["cpu_s"]) * 1000,
            "wakeups": (b["switches"] - a["switches"]) / seconds,
        }

    d, b = figures(start_d, end_d), figures(start_b, end_b)
    return [
        Row(
            SECTION,
            "daemon RSS",
            d["rss_mb"],
            "MB",
            "bare python",
            b["rss_mb"],
            d["rss_mb"] / b["rss_mb"],
            "<= 40 MB",
            d["rss_mb"] <= 40,
            note=f"over {seconds:.0f} s after {SETTLE:.0f} s to settle",
        ),
        Row(
            SECTION,
            "daemon RSS vs its dependencies imported",
            d["rss_mb"],
            "MB",
            "deps imported",
            floor_mb,
            d["rss_mb"] / floor_mb,
            "",
            None,
            note=f"the anchor imports {DEPENDENCIES} and sleeps",
        ),
        Row(
            SECTION,
            f"daemon CPU time over {seconds:.0f} s",
            d["cpu_ms"],
            "ms",
            "bare python",
            b["cpu_ms"],
            None,
            "~0 (< 1% of a core)",
            d["cpu_ms"] < seconds * 10,
        ),
        Row(
            SECTION,
            "daemon wake-ups (context switches)",
            d["wakeups"],
            "/s",
            "bare python",
            b["wakeups"],
            None,
            "no polling (< 1/s)",
            d["wakeups"] < 1,
        ),
    ]
