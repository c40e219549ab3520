"""Running the daemon as a user service: systemd units and a LaunchAgent, socket activation,
sd_notify, and the ``agent-telemetry service`` installer behind them (docs/service.md)."""

from agent_telemetryd.service.activation import inherited_sockets
from agent_telemetryd.service.notify import SdNotifier

__all__ = ["SdNotifier", "inherited_sockets"]
