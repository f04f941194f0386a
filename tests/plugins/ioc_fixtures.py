"""Fixtures for the simulated IOCs and the RunEngine (filled by the IOC work)."""
