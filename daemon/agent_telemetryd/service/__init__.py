"""Running the daemon as a user service: systemd units and LaunchAgents, socket activation,
sd_notify, the private environment file, and the ``agent-telemetry service`` installer
behind them (docs/service.md).

Nothing is imported here: the daemon needs only ``activation`` and ``notify``, the config
only ``envfile``, and neither should pay for the installer.
"""
