"""`python -m agent_telemetry_server` is the same as the `agent-telemetry-server` script."""

from agent_telemetry_server.cli import main

if __name__ == "__main__":
    main()
