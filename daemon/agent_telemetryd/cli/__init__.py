"""The `agent-telemetry` command line (DESIGN §11)."""

from __future__ import annotations

import click

from agent_telemetryd import __version__
from agent_telemetryd.cli import (
    consent_commands,
    core_commands,
    dashboard_commands,
    upload_commands,
)
from agent_telemetryd.cli.service import service


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="agent-telemetry")
def main() -> None:
    """agent-telemetry: a privacy-first telemetry sidecar for AI agents.

    Events from your agents stay on this machine unless you run `agent-telemetry enable`.
    """


for command in (
    core_commands.daemon,
    core_commands.status,
    core_commands.export,
    core_commands.clear,
    consent_commands.mode,
    consent_commands.enable,
    consent_commands.disable,
    upload_commands.flush,
    upload_commands.preview,
    upload_commands.quarantine,
    upload_commands.reset_id,
    upload_commands.forget,
    dashboard_commands.dashboard,
    dashboard_commands.report,
    service,
):
    main.add_command(command)
