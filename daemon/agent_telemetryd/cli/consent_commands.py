"""mode, enable, disable: the user's consent."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from agent_telemetryd.cli.buffer_access import offline_file, store_errors_to_stderr
from agent_telemetryd.cli.common import call_api, daemon_pid, get_config
from agent_telemetryd.cli.consent_hints import THIS_SHELL, daemon_places, next_step, shell_warning
from agent_telemetryd.config import MODES, Config, Mode
from agent_telemetryd.consent import ConsentState, UntrustedConsent, read_stored
from agent_telemetryd.consent_env import consent_environment
from agent_telemetryd.mode_change import record_choice
from agent_telemetryd.service.envfile import backend_setup_hint
from agent_telemetryd.store import offline_writes
from agent_telemetryd.store.database import is_full
from agent_telemetryd.store.reserve import SpaceReserve


def set_mode(mode: str) -> None:
    config = get_config()
    shell = consent_environment(config)
    # The backend that matters is the one the daemon was started with, not this shell's.
    sender = config.sender
    if daemon_pid(config) is not None:
        result = call_api(config, "POST", "/v1/mode", {"mode": mode, "via": "cli"})
        effective, source, reason = result["mode"], result["mode_source"], result["mode_reason"]
        sender = str(result["sender"])
        # The daemon's environment decided; what this shell holds is only worth a warning.
        decided_by = result.get("consent_environment") or {}
        where = daemon_places(config)
        warning = shell_warning(shell, decided_by, config)
        if warning is not None:
            click.echo(warning, err=True)
        kept = result.get("unreadable_record_kept_as")
        set_aside = Path(kept) if kept else None
    else:
        store_errors_to_stderr()
        after, set_aside = _record_offline(config, mode)
        # Whatever this shell's environment says the mode was before: nothing stays pending.
        # `off` creates no buffer; one that exists is brought in line with the new mode
        # (on a full disk too: store/offline_writes.py).
        if not after.uploads and config.paths.database.exists():
            with offline_file(config) as file:
                offline_writes.revoke_pending(file)
        effective, source, reason = after.mode, after.source, after.reason
        decided_by, where = shell, THIS_SHELL
    if set_aside is not None:
        click.echo(
            f"The consent record could not be read; it is kept as {set_aside}, "
            "and a new one starts with this choice."
        )
    click.echo(f"Mode: {effective}")
    if effective != mode:
        click.echo(f"Stored {mode}, but {source} decides for now: {reason}.")
    click.echo(next_step(effective, mode, decided_by, where))
    if effective == Mode.UPLOAD and sender == "none":
        click.echo(backend_setup_hint(config.paths.config_file, sys.platform))


def _record_offline(config: Config, mode: str) -> tuple[ConsentState, Path | None]:
    """Store the choice. On a full disk the daemon's reserve file gives the room when it is
    on the same disk: leaving upload must stick exactly when the disk is in trouble."""
    try:
        return record_choice(config, mode, via="cli")
    except OSError as error:
        if not (is_full(error) and _release_reserve_beside(config)):
            raise click.ClickException(_not_recorded(config, error)) from None
    try:
        return record_choice(config, mode, via="cli")
    except OSError as error:
        raise click.ClickException(_not_recorded(config, error)) from None


def _release_reserve_beside(config: Config) -> bool:
    folder = config.paths.consent_file.parent
    try:
        same_disk = folder.stat().st_dev == config.paths.data_dir.stat().st_dev
    except OSError:
        return False
    return same_disk and SpaceReserve(config.paths.data_dir).release()


def _not_recorded(config: Config, error: OSError) -> str:
    reason = (error.strerror or str(error)).lower()
    fix = "; free some space on that disk, then run the command again" if is_full(error) else ""
    stored = read_stored(config.paths.consent_file)
    if isinstance(stored, UntrustedConsent):
        # Its owner's file in a folder shared with them (sticky /tmp): only they may replace it.
        fix = (
            f"; it {stored.problem} and is not used; keep the config in a folder of your own "
            "(AGENT_TELEMETRY_CONFIG) to record a choice"
        )
    return f"cannot record the mode in {config.paths.consent_file}: {reason}{fix}"


@click.command()
@click.argument("mode", type=click.Choice(MODES))
def mode(mode: str) -> None:
    """Set the consent mode: off, local (the default) or upload.

    \b
    Example:
        agent-telemetry mode local
    """
    set_mode(mode)


@click.command()
def enable() -> None:
    """Upload events received from now on (same as `mode upload`).

    \b
    Example:
        agent-telemetry enable
    """
    set_mode(Mode.UPLOAD)


@click.command()
def disable() -> None:
    """Stop uploading; keep events locally (same as `mode local`).

    \b
    Example:
        agent-telemetry disable
    """
    set_mode(Mode.LOCAL)
