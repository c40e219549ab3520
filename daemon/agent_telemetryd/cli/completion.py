"""completion: the shell completion script for bash, zsh or fish (click's own)."""

from __future__ import annotations

import click
from click.shell_completion import get_completion_class

SHELLS = ("bash", "zsh", "fish")
# click derives this from the program name; the script and the program must agree on it.
COMPLETE_VAR = "_AGENT_TELEMETRY_COMPLETE"


@click.command()
@click.argument("shell", type=click.Choice(SHELLS))
def completion(shell: str) -> None:
    """Print the script that makes SHELL complete agent-telemetry's commands and options.

    \b
    Example:
        eval "$(agent-telemetry completion bash)"     # in ~/.bashrc
        eval "$(agent-telemetry completion zsh)"      # in ~/.zshrc
        agent-telemetry completion fish > ~/.config/fish/completions/agent-telemetry.fish
    """
    from agent_telemetryd.cli import main

    completer = get_completion_class(shell)
    assert completer is not None  # every name in SHELLS is one click ships
    click.echo(completer(main, {}, "agent-telemetry", COMPLETE_VAR).source())
