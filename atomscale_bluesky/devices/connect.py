"""Connecting devices before a plan runs."""

from __future__ import annotations

from ophyd import Device


def connect_all(*devices: Device, timeout: float = 10.0) -> None:
    """Wait for every PV a plan will touch (areaDetector components are lazy)."""
    for device in devices:
        device.wait_for_connection(timeout=timeout)
