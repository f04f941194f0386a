"""Runnable simulated IOCs: ``python -m iocs.rheed_camera`` and ``python -m iocs.growth_sensors``."""
