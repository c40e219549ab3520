"""agent-telemetry daemon: local buffer, consent-gated upload, the user's own analytics."""

__version__ = "0.1.0"
