"""Applying a consent change to a running daemon (DESIGN §8).

Whenever the mode is not `upload`, no event may stay pending: they become local-only for
good, whatever decided the mode (a command, the config, DO_NOT_TRACK, CI). The listeners
are told — the uploader stops before its next request. Leaving `off` opens the buffer,
which `off` never creates.
"""

from __future__ import annotations

import structlog

from agent_telemetryd.consent import ConsentState, StoredConsent, decide
from agent_telemetryd.context import DaemonContext
from agent_telemetryd.store.buffer import Buffer
from agent_telemetryd.store.upload_queries import revoke_pending

log = structlog.get_logger("agent_telemetryd.consent")


async def revoke_unless_uploading(context: DaemonContext) -> None:
    """Pending events cannot outlive upload consent: not across a restart, not after a
    mode decided by the environment. Cheap when there are none (index on upload, id)."""
    if context.consent.uploads or context.buffer is None:
        return
    revoked = await context.buffer.writer.run(revoke_pending)
    if revoked:
        log.info("upload_consent_withdrawn", pending_made_local=revoked)


async def apply_mode(context: DaemonContext, stored: StoredConsent | None) -> ConsentState:
    before = context.consent
    after = decide(context.config, stored)
    context.consent = after
    if after.keeps and context.buffer is None:
        context.buffer = await Buffer.open_for(context.config)
    await revoke_unless_uploading(context)
    if before.mode != after.mode:
        log.info("mode_changed", mode=after.mode, previous=before.mode, source=after.source)
        for listener in context.mode_listeners:
            await listener(before, after)
    return after
