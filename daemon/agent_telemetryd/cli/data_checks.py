"""`doctor`'s verdicts on the data: free disk, the buffer, the spool, the clock.

Pure, as checks.py: each function takes facts gathered by `doctor.py` and returns a
`Check`.
"""

from __future__ import annotations

from pathlib import Path

from agent_telemetryd.cli.checks import FAIL, OK, START_DAEMON, WARN, Check


def disk(path: Path, free: int, total: int, buffer_bytes: int, max_bytes: int) -> Check:
    mib = 1024 * 1024
    detail = f"{free // mib:,} MiB free of {total // mib:,} MiB at {path}"
    if free < 100 * mib:
        return Check(
            "disk",
            FAIL,
            f"{detail}: new events will soon be refused",
            "free space there, or make the buffer smaller: agent-telemetry export, "
            "then agent-telemetry clear",
        )
    if buffer_bytes > 0.9 * max_bytes:
        return Check(
            "disk",
            WARN,
            f"{detail}; the buffer ({buffer_bytes // mib:,} MiB) is near its cap "
            f"({max_bytes // mib:,} MiB): new events will be refused once sent ones are gone",
            "raise store.max_bytes, or: agent-telemetry export, then agent-telemetry clear",
        )
    if free < 1024 * mib or free < total * 0.05:
        return Check("disk", WARN, f"{detail}: little room left", "free space on that disk")
    return Check("disk", OK, detail)


def buffer(path: Path, exists: bool, state: str, messages: tuple[str, ...]) -> Check:
    if not exists:
        return Check("buffer", OK, f"no buffer yet at {path}")
    if state == "ok":
        return Check("buffer", OK, f"{path}: every page reads (quick_check)")
    if state == "unfinished":
        return Check(
            "buffer",
            WARN,
            f"{path}: the check did not finish in time (a large buffer or a busy disk)",
            "run agent-telemetry doctor again when the machine is quieter",
        )
    found = "; ".join(messages) or state
    return Check(
        "buffer",
        FAIL,
        f"{path} is damaged: {found}",
        "export what still reads (agent-telemetry export -o events.json), then restart the "
        "daemon: it moves a damaged buffer aside and starts a fresh one",
    )


def newer_buffer(error: Exception) -> Check:
    """A buffer a newer agent-telemetry wrote: every page may read, but the daemon of this
    version refuses to start with it, and with it every event stays in the agents' spool."""
    return Check(
        "buffer",
        FAIL,
        f"{error}; the daemon of this version will not start with it",
        "install the newer agent-telemetry again, or move the buffer aside",
    )


def foreign_wal(path: Path, reason: str) -> Check:
    return Check(
        "buffer",
        WARN,
        f"{path}: every page reads (quick_check); the write-ahead log beside it is not its "
        f"own ({reason}) and was not read",
        "start the daemon (agent-telemetry daemon): it moves that file aside, kept and never "
        "applied",
    )


def spool(path: Path, files: int, size: int, daemon_running: bool) -> Check:
    if files == 0:
        return Check("spool", OK, f"nothing waiting in {path}")
    detail = f"{files} file(s), {size:,} bytes waiting in {path}"
    if not daemon_running:
        return Check("spool", WARN, f"{detail}: the daemon takes them when it starts", START_DAEMON)
    return Check(
        "spool",
        WARN,
        f"{detail}: the daemon takes them when an agent next connects",
        "nothing to do unless it stays; then restart the daemon",
    )


def clock(now_ms: int, newest_ms: int | None, backend_skew_s: float | None) -> Check:
    if now_ms < 1_704_067_200_000:  # 2024-01-01: no event of this program is older
        return Check(
            "clock",
            FAIL,
            "this machine's clock is before 2024",
            "set the clock (timedatectl set-ntp true)",
        )
    if newest_ms is not None and newest_ms > now_ms + 300_000:
        ahead = (newest_ms - now_ms) // 1000
        return Check(
            "clock",
            WARN,
            f"the newest stored event arrived {ahead} s in what is now the future: "
            "the clock went back",
            "keep the clock synchronised (timedatectl set-ntp true)",
        )
    if backend_skew_s is not None and abs(backend_skew_s) > 300:
        return Check(
            "clock",
            WARN,
            f"{abs(backend_skew_s):.0f} s {'behind' if backend_skew_s > 0 else 'ahead of'} "
            "the backend's clock: event times will look shifted there",
            "keep the clock synchronised (timedatectl set-ntp true)",
        )
    said = (
        f"; within {abs(backend_skew_s):.0f} s of the backend's"
        if backend_skew_s is not None
        else ""
    )
    return Check("clock", OK, f"plausible{said}")
