"""``agent-telemetry service install|uninstall|status``: run the daemon as a user service."""

from __future__ import annotations

import json
from pathlib import Path

import click

from agent_telemetryd.service.install import Plan, install, uninstall
from agent_telemetryd.service.layout import ServiceError
from agent_telemetryd.service.manager import ServiceStatus, service_status

__all__ = ["service"]


@click.group()
def service() -> None:
    """Run the daemon as a user service (systemd on Linux, launchd on macOS).

    \b
    Example:
        agent-telemetry service install --dry-run
        agent-telemetry service install
        agent-telemetry service status
    """


@service.command("install")
@click.option(
    "--dry-run",
    is_flag=True,
    help="Print the files and commands and run the same checks; change nothing. "
    "Exits 1 when a real install would refuse.",
)
@click.option(
    "--executable",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The agent-telemetry executable the service runs (default: this one).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
def install_command(dry_run: bool, executable: Path | None, as_json: bool) -> None:
    """Write the service definitions, enable them and start the daemon.

    Installs the daemon (with socket activation on Linux) and a timer that uploads at the
    upload interval. Keys for the service go in its private environment file (install
    creates it, copying the sender's keys set in this shell); re-running install updates
    the files (e.g. after moving the install) and restarts the daemon.

    \b
    Example:
        agent-telemetry service install --dry-run
    """
    try:
        plan = install(executable=executable, dry_run=dry_run)
    except ServiceError as exc:
        raise click.ClickException(str(exc)) from exc
    _echo_plan(plan, as_json)
    if plan.refusals:
        # The same exit status as the real install, which would stop here.
        raise click.ClickException("a real install would refuse: " + "; ".join(plan.refusals))


@service.command("uninstall")
@click.option("--dry-run", is_flag=True, help="Print the files and commands; change nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
def uninstall_command(dry_run: bool, as_json: bool) -> None:
    """Stop and disable the service and remove the files install wrote.

    The event buffer, config and logs are kept.

    \b
    Example:
        agent-telemetry service uninstall
    """
    try:
        plan = uninstall(dry_run=dry_run)
    except ServiceError as exc:
        raise click.ClickException(str(exc)) from exc
    _echo_plan(plan, as_json)


@service.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
def status_command(as_json: bool) -> None:
    """Show whether the service is installed, enabled and running.

    Exits 0 whatever the answer; scripts read `--json` (`installed`, `enabled`, `running`).

    \b
    Example:
        agent-telemetry service status --json
    """
    try:
        status = service_status()
    except ServiceError as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(json.dumps(status.to_dict(), indent=2))
        return
    _echo_status(status)


def _echo_plan(plan: Plan, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(plan.to_dict(), indent=2))
        return
    verbs = {
        "mkdir": ("would create", "created"),
        "write": ("would write", "wrote"),
        "remove": ("would remove", "removed"),
        "run": ("would run", "ran"),
    }
    for step in plan.steps:
        described = step.describe()
        if described in plan.tolerated:
            # A clean-up command that found nothing to clean up (e.g. no earlier copy loaded).
            click.echo(f"skipped: {described} ({plan.tolerated[described]})")
            continue
        if step.kind == "mkdir" and step.exists:
            # Kept as it is, mode and all: nothing to create.
            click.echo(f"exists: {described}")
            continue
        verb = verbs[step.kind][0 if plan.dry_run else 1]
        click.echo(f"{verb}: {described}")
        if plan.dry_run and step.printable is not None:
            for line in step.printable.splitlines():
                click.echo(f"    {line}")
    for note in plan.notes:
        click.echo(note)


def _echo_status(status: ServiceStatus) -> None:
    manager = "reachable" if status.manager else "not reachable"
    kind = "launchd" if status.platform == "darwin" else "systemd user manager"
    click.echo(f"platform:  {status.platform} ({kind}: {manager})")
    if status.manager_detail:
        click.echo(f"           {status.manager_detail}")
    click.echo(f"installed: {_yes(status.installed)}")
    for path, exists in status.files.items():
        click.echo(f"           {path}{'' if exists else ' (missing)'}")
    click.echo(f"enabled:   {_yes(status.enabled)}")
    running = f"yes (pid {status.pid})" if status.running else "no"
    click.echo(f"running:   {running}")
    for unit in status.units:
        pid = f" pid {unit.pid}" if unit.pid else ""
        enabled = "enabled" if unit.enabled else "disabled"
        click.echo(f"           {unit.name}: {enabled}, {unit.state}{pid}")
    click.echo(f"logs:      {status.logs}")
    if status.outdated:
        click.echo(f"outdated:  {_OUTDATED}")
        for path in status.outdated:
            click.echo(f"           {path}")
        click.echo("update with: agent-telemetry service install")
    elif not status.installed:
        click.echo("install with: agent-telemetry service install")


_OUTDATED = "not as this version writes them (an older version's, or settings changed since):"


def _yes(value: bool) -> str:
    return "yes" if value else "no"
