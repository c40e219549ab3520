"""What a command says about the mode's environment variables.

Two things a user cannot see otherwise: a consent variable set in the command's shell does
nothing to a running daemon (its own environment decides), and when a variable overrides
the stored choice, running `enable` or `mode local` again changes nothing: the variable
must go. Both come from the environment that decided, as the daemon reports it.
"""

from __future__ import annotations

import sys
from typing import Any

from agent_telemetryd.config import Config, Mode
from agent_telemetryd.consent_env import CI, DISABLED, DO_NOT_TRACK, MODE, VARIABLES
from agent_telemetryd.service.envfile import env_file_path, restart_hint

Variables = dict[str, Any]  # consent_env.consent_environment()


def daemon_places(config: Config) -> str:
    """Where the daemon's environment comes from."""
    return (
        f"where the daemon is started ({env_file_path(config.paths.config_file)} when it "
        f"runs as a service, then: {restart_hint(sys.platform)}; or the shell that runs "
        "`agent-telemetry daemon`, then restart it)"
    )


# With the daemon down, the next daemon started from this shell has this shell's variables.
THIS_SHELL = "in this shell and wherever the daemon is started"


def shell_warning(shell: Variables, daemon: Variables | None, config: Config) -> str | None:
    """A warning naming the consent variables set in this shell that the running daemon's
    environment does not have (or has with another mode), or None."""
    if not daemon:
        return None
    ignored = []
    for name in VARIABLES:
        mine, theirs = shell.get(name), daemon.get(name)
        if not mine or mine == theirs:
            continue
        if name == MODE:
            ignored.append(f"{MODE}={mine}" + (f" (the daemon's is {theirs})" if theirs else ""))
        else:
            ignored.append(name)
    if not ignored:
        return None
    one = len(ignored) == 1
    names = ignored[0] if one else f"{', '.join(ignored[:-1])} and {ignored[-1]}"
    return (
        f"Warning: {names} {'is' if one else 'are'} set in this shell but not in the running "
        "daemon's environment, and the daemon's own environment decides its mode: here "
        f"{'it changes' if one else 'they change'} nothing. To make {'it' if one else 'them'} "
        f"count, set {'it' if one else 'them'} {daemon_places(config)}."
    )


def next_step(mode: str, chosen: str | None, variables: Variables, where: str) -> str:
    """What `mode` means and how to leave it. When a variable decides, running a command
    again would change nothing: the variable is named, with `where` to unset it."""
    if mode == Mode.OFF:
        return _off(chosen, variables, where)
    if mode == Mode.LOCAL:
        return _local(chosen, variables, where)
    if variables.get(MODE) == Mode.UPLOAD:
        return (
            "Events received from now on are uploaded on schedule: AGENT_TELEMETRY_MODE=upload "
            f"decides. Stop: unset AGENT_TELEMETRY_MODE {where}"
            + _then(chosen, (Mode.LOCAL, Mode.OFF), "agent-telemetry disable")
            + " (pending events then stay local for good)"
        )
    return (
        "Events received from now on are uploaded on schedule. "
        "Stop: agent-telemetry disable (pending events then stay local for good)"
    )


def _off(chosen: str | None, variables: Variables, where: str) -> str:
    if variables.get(DISABLED):
        name = DISABLED
    elif variables.get(MODE) == Mode.OFF:
        name = "AGENT_TELEMETRY_MODE=off"
    else:
        return "Nothing is kept or sent. Keep events locally again: agent-telemetry mode local"
    return (
        f"Nothing is kept or sent: {name} decides. Keep events again: unset "
        f"{name.split('=')[0]} {where}"
        + _then(chosen, (Mode.LOCAL, Mode.UPLOAD), "agent-telemetry mode local")
    )


def _local(chosen: str | None, variables: Variables, where: str) -> str:
    blockers = []
    if variables.get(MODE) not in (None, Mode.UPLOAD):
        blockers.append(MODE)
    if variables.get(DO_NOT_TRACK):
        blockers.append(DO_NOT_TRACK)
    if variables.get(CI) and variables.get(MODE) != Mode.UPLOAD:
        blockers.append(CI)
    if not blockers:
        return (
            "Events are kept for you only and never sent. "
            "Send them to the configured backend: agent-telemetry enable"
        )
    names = " and ".join(blockers)
    also = " (or set AGENT_TELEMETRY_MODE=upload there)" if blockers == [CI] else ""
    return (
        f"Events are kept for you only and never sent: {names} "
        f"{'decides' if len(blockers) == 1 else 'decide'}. To upload: unset {names} "
        f"{where}{also}" + _then(chosen, (Mode.UPLOAD,), "agent-telemetry enable")
    )


def _then(chosen: str | None, enough: tuple[str, ...], command: str) -> str:
    """The command still to run once the variable is gone, unless the stored choice is
    already one of `enough`: then that applies by itself."""
    if chosen in enough:
        return f"; the stored choice ({chosen}) then applies"
    return f"; then: {command}"
