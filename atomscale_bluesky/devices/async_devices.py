"""ophyd-async equivalents of :mod:`atomscale_bluesky.devices` (Channel Access through aioca).

Keys use ophyd-async's ``-`` separator (``rheed-image``, ``growth-substrate_temperature``).
``Array1D[np.uint8]`` gives ``dtype_numpy "|u1"`` and monitors that deliver the subscribed reading
itself; CA has no 2-D shape, so the image stays flat ``[H*W]`` and ``width``/``height`` are in the
configuration. Create devices inside ``init_devices()`` after the RunEngine exists.
"""

from __future__ import annotations

import numpy as np
from ophyd_async.core import Array1D, StandardReadable, StandardReadableFormat, StrictEnum
from ophyd_async.epics.core import epics_signal_r, epics_signal_rw


class ImageMode(StrictEnum):
    SINGLE = "Single"
    MULTIPLE = "Multiple"
    CONTINUOUS = "Continuous"


class Shutter(StrictEnum):
    CLOSED = "Closed"
    OPEN = "Open"


class AcquireState(StrictEnum):
    DONE = "Done"
    ACQUIRE = "Acquire"


class RheedCameraAsync(StandardReadable):
    """The RHEED camera: flat uint8 frames plus counters; period and size as configuration."""

    def __init__(self, prefix: str, name: str = "") -> None:
        with self.add_children_as_readables():
            self.image = epics_signal_r(Array1D[np.uint8], prefix + "image1:ArrayData")
            self.array_counter = epics_signal_r(int, prefix + "image1:ArrayCounter_RBV")
            self.unique_id = epics_signal_r(int, prefix + "image1:UniqueId_RBV")
        with self.add_children_as_readables(StandardReadableFormat.CONFIG_SIGNAL):
            self.acquire_period = epics_signal_r(float, prefix + "cam1:AcquirePeriod_RBV")
            self.width = epics_signal_r(int, prefix + "image1:ArraySize0_RBV")
            self.height = epics_signal_r(int, prefix + "image1:ArraySize1_RBV")
        self.acquire = epics_signal_rw(
            AcquireState, read_pv=prefix + "cam1:Acquire_RBV", write_pv=prefix + "cam1:Acquire"
        )
        self.image_mode = epics_signal_rw(
            ImageMode, read_pv=prefix + "cam1:ImageMode_RBV", write_pv=prefix + "cam1:ImageMode"
        )
        self.acquire_period_setpoint = epics_signal_rw(float, prefix + "cam1:AcquirePeriod")
        super().__init__(name=name)

    @property
    def monitored(self) -> list:
        """Signals a monitor plan subscribes to: the frame, its counters and its size.

        Channel Access carries the frame flat, so its height and width travel as their own
        readings for consumers (the Atomscale callback) to reshape it.
        """
        return [self.image, self.array_counter, self.unique_id, self.width, self.height]


class GrowthSensorsAsync(StandardReadable):
    """The growth sensors' readbacks (with units from the IOC) and their setpoints."""

    def __init__(self, prefix: str, name: str = "") -> None:
        with self.add_children_as_readables():
            self.substrate_temperature = epics_signal_r(float, prefix + "substrate:Temp_RBV")
            self.ga_temperature = epics_signal_r(float, prefix + "cell:Ga:Temp_RBV")
            self.as_temperature = epics_signal_r(float, prefix + "cell:As:Temp_RBV")
            self.in_temperature = epics_signal_r(float, prefix + "cell:In:Temp_RBV")
            self.shutter_ga = epics_signal_r(Shutter, prefix + "shutter:Ga_RBV")
            self.shutter_as = epics_signal_r(Shutter, prefix + "shutter:As_RBV")
            self.rotation_rpm = epics_signal_r(float, prefix + "rotation:RPM_RBV")
            self.azimuth = epics_signal_r(float, prefix + "rotation:Azimuth_RBV")
            self.pressure = epics_signal_r(float, prefix + "chamber:Pressure_RBV")
            self.growth_rate = epics_signal_r(float, prefix + "growth:Rate_RBV")
        self.substrate_temperature_setpoint = epics_signal_rw(float, prefix + "substrate:TempSP")
        self.rotation_rpm_setpoint = epics_signal_rw(float, prefix + "rotation:RPM")
        self.shutter_ga_cmd = epics_signal_rw(Shutter, prefix + "shutter:Ga")
        super().__init__(name=name)

    @property
    def monitored(self) -> list:
        """Readback signals a monitor plan subscribes to."""
        return [self.substrate_temperature, self.pressure, self.growth_rate, self.shutter_ga]
