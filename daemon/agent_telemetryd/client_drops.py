"""A shim's report of the events it lost before the daemon could take them. No I/O.

Not an event: a line of its own shape, whose counts the daemon adds to `received` and
`dropped`, so that the user sees the agent's losses in `status` too.
"""

from __future__ import annotations

from typing import Any

from agent_telemetryd.event_fields import EventError

# A shim's report of events it lost before the daemon could take them (backlog full, too
# large, spool full, ...): `{"client_drops": {"<reason>": <count>, ...}, "agent": "<name>"}`,
# counts since its last such line. Not an event: each count is counted as received and
# dropped under `client_<reason>`, so the user sees the agent's losses in `status` too.
CLIENT_DROPS = "client_drops"
_DROP_LINE_FIELDS = frozenset((CLIENT_DROPS, "agent"))
# The reasons the shims report (client_shim/agent_telemetry/_client.py, node/sender.js);
# any other word is `client_other`. Each kept reason is a counter the buffer holds for
# good and `status` lists: a client sending new words per line (2,000 lines of 30 words
# made 60,000 counters, and a 1.9 MB `status --json`) must not grow them.
SHIM_DROP_REASONS = frozenset(
    (
        "backlog_full",
        "invalid",
        "too_large",
        "spool_full",
        "spool_failed",
        "mode_off",
        "exit_timeout",
        "disabled",
        "no_socket_path",
    )
)
MAX_DROP_REASONS = 32
MAX_DROP_COUNT = 2**40  # far beyond what one process could track between two reports


def client_drop_counts(document: dict[str, Any]) -> dict[str, int]:
    """The counts of a drop-count line as drop reasons (`client_<reason>`); raises EventError.

    The reasons are text a client chose: a reason the shims report is kept, anything else
    is counted as `client_other`, so a reason can neither hold content nor grow the
    counters without bound.
    """
    if not _DROP_LINE_FIELDS.issuperset(document):
        raise EventError("drop-count line: unknown field (allowed: client_drops, agent)")
    agent = document.get("agent")
    if agent is not None and not isinstance(agent, str):
        raise EventError("drop-count line: field 'agent' must be a string")
    counts = document[CLIENT_DROPS]
    if not isinstance(counts, dict) or len(counts) > MAX_DROP_REASONS:
        raise EventError(
            f"drop-count line: 'client_drops' must be an object of at most "
            f"{MAX_DROP_REASONS} reasons"
        )
    drops: dict[str, int] = {}
    for reason, count in counts.items():
        if type(count) is not int or not 0 <= count <= MAX_DROP_COUNT:
            raise EventError(
                f"drop-count line: each count must be a whole number from 0 to {MAX_DROP_COUNT}"
            )
        name = f"client_{reason}" if reason in SHIM_DROP_REASONS else "client_other"
        if count:
            drops[name] = drops.get(name, 0) + count
    return drops
