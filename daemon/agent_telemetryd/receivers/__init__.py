"""How events and commands reach the daemon: ingest.sock, api.sock, loopback HTTP."""
