"""Test doubles that are real servers: backends on loopback that check every request."""
