"""The deadline a command sends with each request that changes something on api.sock.

A command waits a while for its answer, then tells the user it failed. A daemon that was
stopped (SIGSTOP, a hung disk) would still find the request in its socket when it runs
again, and carry it out: a `clear` or `mode off` the user was told did not happen would
happen after all. So the command sends the time by which the daemon must have begun, and
the daemon refuses the request, without effect, once that time has passed.

The deadline falls halfway through the command's wait: the other half is the daemon's
to do the work and answer, so a request it accepts is one the command hears about. Both
sides read the same wall clock, on one machine.

Only the standard library: the command line imports it on every call.
"""

from __future__ import annotations

HEADER = "Agent-Telemetry-Deadline"
# The share of a command's wait in which the daemon may still begin the work.
ACCEPT_SHARE = 0.5


def deadline_for(sent_at: float, timeout: float) -> float:
    """The epoch time after which the daemon refuses a request sent at `sent_at` by a
    command that waits `timeout` seconds for the answer."""
    return sent_at + timeout * ACCEPT_SHARE


def format_deadline(deadline: float) -> str:
    return f"{deadline:.3f}"


def seconds_late(header: str | None, now: float) -> float | None:
    """How long ago the deadline in `header` passed, or None when it has not (or when the
    request has none: a script's request is carried out as before). A header that is not
    a time counts as passed: the sender meant to bound the request, and what bound it
    cannot be known."""
    if header is None:
        return None
    try:
        deadline = float(header)
    except ValueError:
        return float("inf")
    if deadline != deadline:  # NaN
        return float("inf")
    return now - deadline if now > deadline else None
