"""Fixtures for the local Atomscale-compatible server (filled by the server work)."""
