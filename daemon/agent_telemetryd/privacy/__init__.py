"""What happens to an event before it is stored: scrubbing and the allowlist."""
