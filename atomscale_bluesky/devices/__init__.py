"""ophyd devices for the RHEED camera and the growth sensors (the ``devices`` extra).

The ophyd-async equivalents live in :mod:`atomscale_bluesky.devices.async_devices` and need the
``sim`` extra; importing this package does not import ophyd-async.
"""

from atomscale_bluesky.devices.rheed_camera import (
    AD_DTYPES,
    CallbackConsistentRead,
    CounterSignal,
    GrowthSensors,
    RheedCam,
    RheedCamera,
    RheedImagePlugin,
    RheedImageSignal,
    connect_all,
)

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
]
