"""`agent-telemetry reload` (POST /v1/reload on api.sock) and SIGHUP: re-read the config
and apply it to the running daemon without dropping a connection or an event.

Nothing that holds a connection is touched: listeners, sockets and the buffer stay as they
are. What changes is swapped between units of work — the ingestor's transforms and rate
limit between one arrival and the next, the uploader's sender between one flush and the
next (a flush under way stops before its next request when the sender changes: it must not
go on sending to a backend taken out of the config). A config that does not
load keeps every running setting, and the reply (or the log, for SIGHUP) names each
problem. `reload_plan` says what is applied and what waits for a restart.
"""

from __future__ import annotations

import asyncio
import signal
from typing import TYPE_CHECKING, Any

import orjson

from agent_telemetryd.config import read_config
from agent_telemetryd.config_problems import refused_by_the_daemon
from agent_telemetryd.consent import decide, read_stored
from agent_telemetryd.context import DaemonContext
from agent_telemetryd.lazy_log import get_logger
from agent_telemetryd.mode_change import apply_mode
from agent_telemetryd.parts import Started
from agent_telemetryd.ratelimit_state import apply_new_rules
from agent_telemetryd.reload_plan import PRIVACY_SETTINGS, RATE_LIMIT_SETTINGS, ReloadPlan, plan
from agent_telemetryd.terminal import hung_up

if TYPE_CHECKING:
    from aiohttp import web

log = get_logger("agent_telemetryd.reload")


async def reload_config(context: DaemonContext, lock: asyncio.Lock, *, via: str) -> dict[str, Any]:
    """Re-read the config and apply what can be applied; the reply for the CLI."""
    async with lock:  # one reload at a time: a second SIGHUP waits for the first
        config, problems = read_config(paths=context.config.paths)
        problems = refused_by_the_daemon(problems)
        if problems:
            for problem in problems:
                log.error("reload_refused", problem=str(problem), via=via)
            return {
                "ok": False,
                "error": (
                    f"the config has {len(problems)} "
                    f"{'problem' if len(problems) == 1 else 'problems'}; "
                    "the running settings are kept"
                ),
                "problems": [str(problem) for problem in problems],
            }
        change = plan(context.config, config)
        notes = await _apply(context, change)
        reply = _reply(change)
        reply["notes"] += notes
        log.info(
            "config_reloaded",
            via=via,
            applied=sorted(change.applied),
            needs_restart=[c.setting for c in change.needs_restart],
        )
        return reply


async def _apply(context: DaemonContext, change: ReloadPlan) -> list[str]:
    """Apply `change`; returns what the reply should say about what it did."""
    notes: list[str] = []
    before, after = context.config, change.running
    context.config = after
    applied = change.applied
    if context.ingestor is not None and applied & PRIVACY_SETTINGS:
        from agent_telemetryd.daemon import privacy_transforms  # the daemon's one recipe

        context.ingestor.set_transforms(privacy_transforms(after))
    if applied & RATE_LIMIT_SETTINGS:
        note = (await apply_new_rules(context)).note()
        if note is not None:
            notes.append(note)
    for listener in context.config_listeners:
        await listener(before, after)
    # Read whatever changed: the config's `mode`, or the consent record beside it edited
    # by hand since the daemon read it (a user who wrote `local` there and reloaded must
    # not have the daemon go on uploading under the choice it read at start).
    state = decide(after, read_stored(after.paths.consent_file))
    if state != context.consent:
        await apply_mode(context, state)
    return notes


def _reply(change: ReloadPlan) -> dict[str, Any]:
    changed = [c.as_dict() for c in change.changes]
    restart = [c.setting for c in change.needs_restart]
    applied = ", ".join(sorted(change.applied)) or "nothing new"
    if not changed:
        summary = "nothing changed"
    elif restart:
        summary = f"applied {applied}; restart the daemon for {', '.join(restart)}"
    else:
        summary = f"applied {applied}; nothing needs a restart"
    return {
        "ok": True,
        "summary": summary,
        "changed": changed,
        "applied": sorted(change.applied),
        "needs_restart": restart,
        "notes": list(change.notes),
    }


# The one route this part adds, on api.sock only.
ROUTE = "/v1/reload"


async def start(context: DaemonContext) -> Started:
    """SIGHUP reloads the config (what `systemctl reload` sends); so does the route
    `POST /v1/reload` on api.sock, once there is HTTP."""
    lock = asyncio.Lock()

    async def post_reload(request: web.Request) -> web.Response:
        from aiohttp import web  # loaded by then: this is one of its handlers

        reply = await reload_config(context, lock, via="api")
        return web.json_response(
            reply, status=200 if reply["ok"] else 422, dumps=lambda v: orjson.dumps(v).decode()
        )

    def add_routes(api_app: web.Application, tcp_app: web.Application) -> None:
        api_app.router.add_post(ROUTE, post_reload)

    loop = asyncio.get_running_loop()
    pending: set[asyncio.Task[dict[str, Any]]] = set()

    def on_hangup() -> None:
        if hung_up(context.terminal):
            # Not a request to reload: the terminal the daemon runs in was closed.
            log.info("terminal_closed")
            context.request_stop()
            return
        task = loop.create_task(reload_config(context, lock, via="SIGHUP"), name="reload")
        pending.add(task)
        task.add_done_callback(pending.discard)

    loop.add_signal_handler(signal.SIGHUP, on_hangup)
    held = context.held_hangup
    if held is not None and held.take():
        on_hangup()  # one that came while the daemon started: a reload, or the hangup

    async def close() -> None:
        # From here a SIGHUP is ignored, not the default (which would end the process
        # in the middle of its drain).
        loop.add_signal_handler(signal.SIGHUP, lambda: None)
        await asyncio.gather(*pending, return_exceptions=True)

    return Started(close=close, add_routes=add_routes)
