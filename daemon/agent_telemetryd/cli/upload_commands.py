"""preview, quarantine, reset-id, forget: what leaves the machine (flush: flush_command.py)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from typing import Any

import click

from agent_telemetryd.cli.buffer_access import offline_file, read_buffer
from agent_telemetryd.cli.common import (
    call_api,
    confirm_deletion,
    daemon_pid,
    get_config,
    json_option,
    print_json,
)
from agent_telemetryd.config import Config
from agent_telemetryd.consent import decide, read_stored
from agent_telemetryd.senders.factory import build_sender, eraser_for, new_session
from agent_telemetryd.store import offline_writes, queries, upload_queries
from agent_telemetryd.upload import erasure
from agent_telemetryd.upload.part import settings_from
from agent_telemetryd.upload.preview import build_preview

# forget may wait for an upload under way to stop, then sends the erasure request: each
# may take the sender's whole request timeout (60 s). The command waits for the answer.
FORGET_WORK = 150.0


@click.command()
@json_option
@click.option(
    "--max-requests",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="Show at most this many requests.",
)
def preview(as_json: bool, max_requests: int) -> None:
    """Show exactly the request bodies the next flush would send; sends nothing.

    \b
    Example:
        agent-telemetry preview --json --max-requests 1
    """
    config = get_config()
    if daemon_pid(config) is not None:
        result = call_api(config, "GET", f"/v1/preview?max_requests={max_requests}")
    else:
        result = asyncio.run(_offline_preview(config, max_requests))
    if as_json:
        print_json(result)
        return
    if not result["sends"]:
        click.echo(f"Nothing would be sent: {result['reason']}.")
        return
    for request in result["requests"]:
        click.echo(f"{request['method']} {request['url']}")
        for name, value in request["headers"].items():
            click.echo(f"{name}: {value}")
        click.echo(json.dumps(request["body"], indent=2))
        click.echo()
    more = result.get("more_requests", 0)
    tail = f" (and about {more} more requests)" if more else ""
    click.echo(
        f"{result['pending']} events pending for {result['backend']}{tail}. {result['note']}."
    )
    waiting = result.get("waiting") or {}
    if waiting.get("events"):
        click.echo(f"Not in the next flush: {waiting['why']}.")


async def _offline_preview(config: Config, max_requests: int) -> dict[str, Any]:
    consent = decide(config, read_stored(config.paths.consent_file))
    async with new_session() as session:
        sender = build_sender(config, session)
        with read_buffer(config) as conn:
            return build_preview(
                conn,
                consent=consent,
                sender=sender,
                settings=settings_from(config),
                max_requests=max_requests,
            )


@click.command()
@json_option
def quarantine(as_json: bool) -> None:
    """List the events the backend refused, with its reason; they are never re-sent.

    \b
    Example:
        agent-telemetry quarantine --json
    """
    config = get_config()
    if daemon_pid(config) is not None:
        result = call_api(config, "GET", "/v1/quarantine")
    else:
        with read_buffer(config) as conn:
            result = _read_quarantine(conn)
    if as_json:
        print_json(result)
        return
    if not result["total"]:
        click.echo("No events are quarantined.")
        return
    for item in result["events"]:
        click.echo(f"{item['timestamp']}  {item['uuid']}  {item['event']}  {item['reason']}")
    shown = len(result["events"])
    if result["total"] > shown:
        click.echo(f"… and {result['total'] - shown} more")
    click.echo(f"{result['total']} quarantined events.")


def _read_quarantine(conn: sqlite3.Connection | None) -> dict[str, Any]:
    if conn is None:
        return {"total": 0, "events": []}
    try:
        return upload_queries.quarantined(conn)
    except sqlite3.OperationalError:  # a buffer from before quarantine reasons existed
        return {"total": 0, "events": []}


@click.command("reset-id")
def reset_id() -> None:
    """Make a new random anonymous id; events from now on carry it.

    Events already kept stay under their old id and are never sent linked to the new one.

    \b
    Example:
        agent-telemetry reset-id
    """
    config = get_config()
    if daemon_pid(config) is not None:
        new_id = call_api(config, "POST", "/v1/reset-id")["anonymous_id"]
    elif config.paths.database.exists():
        with offline_file(config) as file:
            new_id = offline_writes.write(file, queries.reset_anonymous_id)
    else:
        raise click.ClickException("nothing stored yet: the anonymous id is made on first use")
    click.echo(f"New anonymous id: {new_id}")


@click.command()
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@json_option
def forget(yes: bool, as_json: bool) -> None:
    """Delete every stored event, make a new anonymous id, and ask the backend to erase.

    Sends nothing but the erasure request, and only where the backend has one.

    \b
    Example:
        agent-telemetry forget --yes
    """
    config = get_config()
    confirm_deletion(yes, "forget", "Delete every stored event and ask the backend to erase them?")
    if daemon_pid(config) is not None:
        result = call_api(config, "POST", "/v1/forget", work=FORGET_WORK)
    else:
        result = asyncio.run(_offline_forget(config))
    if as_json:
        print_json(result)
    else:
        click.echo(f"Deleted {result['deleted']} events.")
        if result.get("anonymous_id"):
            click.echo(f"New anonymous id: {result['anonymous_id']}")
        backends = result["erasure"].get("backends") or []
        for answer in backends:
            click.echo(f"Remote data at {answer['backend']}: {answer['message']}.")
        if not backends:
            click.echo(f"Remote data: {result['erasure']['message']}.")
    # Non-zero when a backend was asked and did not confirm (one that could not be asked
    # is said above; its ids are kept for the next forget).
    if any(a["requested"] and not a["ok"] for a in result["erasure"].get("backends") or []):
        raise SystemExit(1)


async def _offline_forget(config: Config) -> dict[str, Any]:
    sent: list[erasure.SentTo] = []
    deleted = 0
    new_id = None
    if config.paths.database.exists():
        # As the daemon does: a fresh file (on a full disk too) that keeps every id in
        # uploaded_ids, then a new id in it.
        with offline_file(config) as file:
            sent = erasure.sent_to(file.conn)
            deleted = offline_writes.clear(file)
            new_id = offline_writes.write(file, queries.reset_anonymous_id)
    async with new_session() as session:
        outcome, erased = await erasure.request_erasure(
            build_sender(config, session),
            sent,
            lambda backend: eraser_for(backend, config, session),
        )
    if erased:
        with offline_file(config) as file:
            offline_writes.write(file, lambda conn: erasure.mark_erased(conn, erased))
    ids = list(dict.fromkeys(item.anonymous_id for item in sent))
    return {"deleted": deleted, "anonymous_id": new_id, "erased_ids": ids, "erasure": outcome}
