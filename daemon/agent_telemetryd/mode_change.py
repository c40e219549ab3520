"""Changing consent: one path, whether the daemon runs or the CLI acts alone.

A choice is recorded (`record_choice`), which decides the effective mode: the
environment and the caps may still win over it. Whenever that mode is not `upload`, no
event may stay pending: they become local-only for good (`withdraw_pending`), whatever
decided the mode (a command, the config, DO_NOT_TRACK, CI). In the daemon the listeners
are then told — the uploader stops before its next request — and leaving `off` opens
the buffer, which `off` never creates.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from agent_telemetryd.config import Config
from agent_telemetryd.consent import ConsentState, decide, write_stored
from agent_telemetryd.context import DaemonContext
from agent_telemetryd.lazy_log import get_logger
from agent_telemetryd.store.upload_queries import revoke_pending

log = get_logger("agent_telemetryd.consent")


def record_choice(config: Config, mode: str, *, via: str) -> tuple[ConsentState, Path | None]:
    """Store the user's choice; returns the effective mode it leads to and, when the record
    it replaces could not be read, where that file is now kept."""
    stored, set_aside = write_stored(config.paths.consent_file, mode, via=via)
    if set_aside is not None:
        log.warning("consent_unreadable_kept", kept_as=str(set_aside), mode=mode)
    return decide(config, stored), set_aside


def withdraw_pending(conn: sqlite3.Connection, state: ConsentState) -> int:
    """Unless `state` uploads, every pending event becomes local-only; returns how many.
    Cheap when there are none (index on upload, id)."""
    return 0 if state.uploads else revoke_pending(conn)


async def revoke_unless_uploading(context: DaemonContext) -> None:
    """Pending events cannot outlive upload consent: not across a restart, not after a
    mode decided by the environment."""
    state = context.consent
    if state.uploads or context.buffer is None:
        return
    revoked = await context.buffer.writer.run(lambda conn: withdraw_pending(conn, state))
    if revoked:
        log.info("upload_consent_withdrawn", pending_made_local=revoked)


async def apply_mode(context: DaemonContext, after: ConsentState) -> ConsentState:
    """Make `after` the running daemon's mode."""
    before = context.consent
    context.consent = after
    if after.keeps and context.buffer is None:
        try:
            await context.open_buffer()
        except BaseException:
            # Still nothing kept: the mode stays what it was (another daemon may hold the
            # buffer, or the disk refuses it), and the caller says why.
            context.consent = before
            raise
    await revoke_unless_uploading(context)
    if before.mode != after.mode:
        log.info("mode_changed", mode=after.mode, previous=before.mode, source=after.source)
        for listener in context.mode_listeners:
            await listener(before, after)
    return after
