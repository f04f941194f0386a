"""Simulated RHEED camera and growth sensors: pattern physics and caproto PVGroups run by ``iocs/``."""
