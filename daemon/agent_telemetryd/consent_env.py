"""The consent variables of one environment, as its config read them.

The daemon's environment decides its mode; a command's shell may hold other values, which
then do nothing. The daemon reports its own (`status`, the reply to a mode change) so that
a command can say which of its shell's settings the daemon does not have, and which
variable to unset when one overrides the stored choice.
"""

from __future__ import annotations

from typing import Any

from agent_telemetryd.config import Config

DISABLED = "AGENT_TELEMETRY_DISABLED"
MODE = "AGENT_TELEMETRY_MODE"
DO_NOT_TRACK = "DO_NOT_TRACK"
CI = "CI"
VARIABLES = (DISABLED, MODE, DO_NOT_TRACK, CI)


def consent_environment(config: Config) -> dict[str, Any]:
    """Each consent variable: True/False for the flags, the mode or None for
    AGENT_TELEMETRY_MODE. Only values that count: `CI=false` is False, as the daemon reads it."""
    return {
        DISABLED: config.disabled,
        MODE: config.mode if config.source_of("mode") == "env" and config.mode else None,
        DO_NOT_TRACK: config.do_not_track,
        CI: config.ci,
    }
