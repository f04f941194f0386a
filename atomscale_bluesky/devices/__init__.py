"""ophyd devices for the RHEED camera and the growth sensors (the ``devices`` extra).

The ophyd-async equivalents live in :mod:`atomscale_bluesky.devices.async_devices` and need the
``sim`` extra; importing this package does not import ophyd-async.
"""

from atomscale_bluesky.devices.connect import connect_all, disconnect_all
from atomscale_bluesky.devices.growth_sensors import GrowthSensors
from atomscale_bluesky.devices.rheed_camera import (
    AD_DTYPES,
    CounterSignal,
    RheedCam,
    RheedCamera,
    RheedImagePlugin,
    RheedImageSignal,
)
from atomscale_bluesky.devices.signals import CallbackConsistentRead

__all__ = [
    "RheedCamera",
    "RheedImageSignal",
    "CounterSignal",
    "RheedCam",
    "RheedImagePlugin",
    "AD_DTYPES",
    "GrowthSensors",
    "CallbackConsistentRead",
    "connect_all",
    "disconnect_all",
]
