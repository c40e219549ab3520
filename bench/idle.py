"""Idle: resident memory, CPU time and wake-ups of a daemon that is given nothing to do.

Wake-ups are context switches summed over every thread (`/proc/PID/task/*/status`):
a polling loop anywhere shows up as a steady rate. The anchor is a bare interpreter
sleeping for the same time, measured the same way. Two daemons are watched over the same
seconds: the default one (mode local, no sender), and one in mode upload with a sender
configured (its schedule, its sender's modules), whose RSS is reported beside it.

Both are waited for by sd_notify (READY=1), not by asking api.sock: the daemon loads its
HTTP side (aiohttp) with the first HTTP connection, and the idle daemon measured is the
common one, whose agents only write to ingest.sock. The default daemon is then asked for
its status once and measured again: what the first HTTP request costs for good.
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
QUICK_SETTLE = 0.5
_TICK = os.sysconf("SC_CLK_TCK")
# What a local daemon nobody has asked over HTTP imports from outside its own code, loaded
# and left idle: the floor under its RSS that no change to its own code can move.
DEPENDENCIES = "asyncio, msgspec, orjson, platformdirs, sqlite3, structlog"
# Mode upload with a sender, for the second daemon: a backend that is never reached (no
# upload is due while it is watched; the schedule is hourly).
UPLOADING = {
    "AGENT_TELEMETRY_MODE": "upload",
    "TELEMETRY_ENDPOINT": "http://127.0.0.1:9",
    "TELEMETRY_API_KEY": "bench",
}


def sample(pid: int) -> dict[str, float]:
    """RSS (MB), CPU seconds, and context switches of every thread of `pid`: all of them,
    and the voluntary ones alone (`woken`: each time a thread slept and was woken again,
    where the others are preemptions)."""
    rss_kb = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss_kb = int(line.split()[1])
    switches = woken = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            text = (task / "status").read_text()
        except OSError:
            continue  # the thread ended meanwhile
        for line in text.splitlines():
            if line.startswith("voluntary_ctxt_switches:"):
                woken += int(line.split()[1])
            elif line.startswith("nonvoluntary_ctxt_switches:"):
                switches += int(line.split()[1])
    switches += woken
    # Fields after the command name (which may hold spaces): utime and stime are 14 and 15.
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(stat[11]) + int(stat[12])) / _TICK
    return {"rss_mb": rss_kb / 1024, "cpu_s": cpu, "switches": switches, "woken": woken}


def run(quick: bool, seconds: float | None = None) -> list[Row]:
    seconds = seconds if seconds is not None else (10.0 if quick else 60.0)
    settle = QUICK_SETTLE if quick else SETTLE
    bare = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
    deps = subprocess.Popen(
        [sys.executable, "-c", f"import {DEPENDENCIES}, time; time.sleep(3600)"]
    )
    try:
        with (
            fixtures.daemon(ready="notify") as proc,
            fixtures.daemon(UPLOADING, ready="notify") as uploading,
        ):
            assert proc.proc is not None and uploading.proc is not None
            # Watched over the same seconds, so a busy moment on the machine hits them all.
            time.sleep(settle)
            start_d, start_b = sample(proc.proc.pid), sample(bare.pid)
            time.sleep(seconds)
            end_d, end_b = sample(proc.proc.pid), sample(bare.pid)
            floor_mb = sample(deps.pid)["rss_mb"]
            upload_mb = sample(uploading.proc.pid)["rss_mb"]
            proc.status()  # the first HTTP request of its life
            time.sleep(settle)
            after_status_mb = sample(proc.proc.pid)["rss_mb"]
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
            note=(
                f"mode local, no sender, no HTTP request yet; over {seconds:.0f} s after"
                f" {settle:g} s to settle"
            ),
        ),
        Row(
            SECTION,
            "daemon RSS after one status request",
            after_status_mb,
            "MB",
            "before it",
            d["rss_mb"],
            after_status_mb / d["rss_mb"],
            note="`agent-telemetry status` over api.sock: the HTTP side (aiohttp) loaded",
        ),
        Row(
            SECTION,
            "daemon RSS, mode upload with a sender",
            upload_mb,
            "MB",
            "mode local, no sender",
            d["rss_mb"],
            upload_mb / d["rss_mb"],
            note="http sender configured, upload schedule running, nothing sent yet",
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
