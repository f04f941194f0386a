"""Connecting devices before a plan runs, and letting them go before their IOCs stop."""

from __future__ import annotations

import ophyd
from ophyd import Device


def connect_all(*devices: Device, timeout: float = 10.0) -> None:
    """Wait for every PV a plan will touch (areaDetector components are lazy)."""
    for device in devices:
        device.wait_for_connection(timeout=timeout)


def disconnect_all(*devices: Device) -> None:
    """Close every channel of ``devices`` and end the process's Channel Access context.

    Call it before the IOCs stop (a session or a demo that started its own IOCs): a context
    still connected when its IOC goes away prints libca's "Virtual circuit disconnect"
    warnings. The process cannot use Channel Access afterwards.
    """
    for device in devices:
        device.destroy()
    if ophyd.get_cl().name == "pyepics":
        import epics.ca

        epics.ca.finalize_libca()
