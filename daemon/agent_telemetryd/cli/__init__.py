"""The `agent-telemetry` command line."""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import click

from agent_telemetryd import __version__

# Each command's module is imported only when that command runs: `status` must not pay for
# aiohttp, APScheduler and the dashboard, and the daemon must not hold the service
# installer's XML modules in memory for its whole life.
COMMANDS: dict[str, str] = {
    "daemon": "agent_telemetryd.cli.core_commands:daemon",
    "status": "agent_telemetryd.cli.status_command:status",
    "export": "agent_telemetryd.cli.core_commands:export",
    "clear": "agent_telemetryd.cli.core_commands:clear",
    "mode": "agent_telemetryd.cli.consent_commands:mode",
    "enable": "agent_telemetryd.cli.consent_commands:enable",
    "disable": "agent_telemetryd.cli.consent_commands:disable",
    "flush": "agent_telemetryd.cli.flush_command:flush",
    "preview": "agent_telemetryd.cli.upload_commands:preview",
    "quarantine": "agent_telemetryd.cli.upload_commands:quarantine",
    "reset-id": "agent_telemetryd.cli.upload_commands:reset_id",
    "forget": "agent_telemetryd.cli.upload_commands:forget",
    "dashboard": "agent_telemetryd.cli.dashboard_commands:dashboard",
    "report": "agent_telemetryd.cli.dashboard_commands:report",
    "stats": "agent_telemetryd.cli.stats:stats",
    "service": "agent_telemetryd.cli.service:service",
    "completion": "agent_telemetryd.cli.completion:completion",
    "otel-env": "agent_telemetryd.cli.otel_env:otel_env",
    "reload": "agent_telemetryd.cli.reload_command:reload",
    "doctor": "agent_telemetryd.cli.doctor:doctor",
}


class LazyGroup(click.Group):
    """A group that imports a command's module on first use (click's documented pattern)."""

    def __init__(self, *args: object, lazy_commands: dict[str, str], **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.lazy_commands = lazy_commands

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy_commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.lazy_commands:
            return super().get_command(ctx, cmd_name)
        module_name, attribute = self.lazy_commands[cmd_name].split(":")
        command = getattr(importlib.import_module(module_name), attribute)
        if not isinstance(command, click.Command):
            raise TypeError(f"{self.lazy_commands[cmd_name]} is not a click command")
        return command

    def shell_complete(
        self, ctx: click.Context, incomplete: str
    ) -> list[click.shell_completion.CompletionItem]:
        """Command names without importing every command's module on each Tab."""
        from click.shell_completion import CompletionItem

        if incomplete.startswith("-"):
            return super().shell_complete(ctx, incomplete)
        return [
            CompletionItem(name) for name in self.list_commands(ctx) if name.startswith(incomplete)
        ]


def _load_env_file(ctx: click.Context, param: click.Parameter, value: Path | None) -> None:
    if value is None:
        return
    from agent_telemetryd.service.envfile import EnvFileError, load_env_file

    try:
        load_env_file(value, os.environ)
    except EnvFileError as error:
        raise click.ClickException(str(error)) from None


@click.group(
    cls=LazyGroup,
    lazy_commands=COMMANDS,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.version_option(__version__, prog_name="agent-telemetry")
@click.option(
    "--env-file",
    type=click.Path(dir_okay=False, path_type=Path),
    callback=_load_env_file,
    expose_value=False,
    is_eager=True,
    help="Read NAME=value lines from FILE into the environment first (how a LaunchAgent "
    "gets the service's keys); a missing FILE is skipped.",
)
def main() -> None:
    """agent-telemetry: a privacy-first telemetry sidecar for AI agents.

    Events from your agents stay on this machine unless you run `agent-telemetry enable`.
    """
