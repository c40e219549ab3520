"""The reference custom backend for agent-telemetry: aiohttp on PostgreSQL."""

__version__ = "0.1.0"
