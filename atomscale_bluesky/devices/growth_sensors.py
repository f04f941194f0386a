"""The MBE chamber's growth sensors: readbacks with units, and the setpoints plans write."""

from __future__ import annotations

from typing import Any

from ophyd import Component as Cpt
from ophyd import Device, EpicsSignal, EpicsSignalRO

from atomscale_bluesky.devices.signals import CallbackConsistentRead, strip_ctrl_limits


def _units_signal(base: type[EpicsSignalRO] | type[EpicsSignal]) -> Any:
    class WithUnits(base):  # type: ignore[valid-type,misc]
        """Describes ``units`` always (enums have no EGU over CA) and never ctrl limits of 0..0."""

        def describe(self) -> dict[str, dict[str, Any]]:
            desc = super().describe()
            entry = desc[self.name]
            if entry.get("units") is None:
                entry["units"] = ""
            if entry.get("lower_ctrl_limit") == entry.get("upper_ctrl_limit"):
                strip_ctrl_limits(entry)
            return desc

    WithUnits.__name__ = f"{base.__name__}WithUnits"
    return WithUnits


class _ConsistentRO(CallbackConsistentRead, EpicsSignalRO):
    """A read-only EPICS signal whose monitor events carry the update that fired them."""


Readback = _units_signal(_ConsistentRO)
Setpoint = _units_signal(EpicsSignal)


class GrowthSensors(Device):
    """The MBE chamber's sensors: every reading is a readback with units (EGU) from the IOC.

    Readings: ``<name>_substrate_temperature`` (degC), ``<name>_ga_temperature``,
    ``<name>_as_temperature``, ``<name>_in_temperature`` (degC), ``<name>_shutter_ga``/``_as``/``_in``
    (0 Closed, 1 Open), ``<name>_rotation_rpm`` (rpm), ``<name>_azimuth`` (deg),
    ``<name>_pressure`` (Torr), ``<name>_growth_rate`` (ML/s), ``<name>_monolayer_period`` (s).
    Setpoints (``*_setpoint``, ``shutter_*_cmd``) are configuration, written by plans.
    """

    substrate_temperature = Cpt(Readback, "substrate:Temp_RBV", auto_monitor=True)
    ga_temperature = Cpt(Readback, "cell:Ga:Temp_RBV", auto_monitor=True)
    as_temperature = Cpt(Readback, "cell:As:Temp_RBV", auto_monitor=True)
    in_temperature = Cpt(Readback, "cell:In:Temp_RBV", auto_monitor=True)
    shutter_ga = Cpt(Readback, "shutter:Ga_RBV", auto_monitor=True)
    shutter_as = Cpt(Readback, "shutter:As_RBV", auto_monitor=True)
    shutter_in = Cpt(Readback, "shutter:In_RBV", auto_monitor=True)
    rotation_rpm = Cpt(Readback, "rotation:RPM_RBV", auto_monitor=True)
    azimuth = Cpt(Readback, "rotation:Azimuth_RBV", auto_monitor=True)
    pressure = Cpt(Readback, "chamber:Pressure_RBV", auto_monitor=True)
    growth_rate = Cpt(Readback, "growth:Rate_RBV", auto_monitor=True)
    monolayer_period = Cpt(Readback, "growth:MonolayerPeriod_RBV", auto_monitor=True)

    substrate_temperature_setpoint = Cpt(Setpoint, "substrate:TempSP", kind="config")
    ga_temperature_setpoint = Cpt(Setpoint, "cell:Ga:TempSP", kind="config")
    as_temperature_setpoint = Cpt(Setpoint, "cell:As:TempSP", kind="config")
    in_temperature_setpoint = Cpt(Setpoint, "cell:In:TempSP", kind="config")
    shutter_ga_cmd = Cpt(Setpoint, "shutter:Ga", kind="config")
    shutter_as_cmd = Cpt(Setpoint, "shutter:As", kind="config")
    shutter_in_cmd = Cpt(Setpoint, "shutter:In", kind="config")
    rotation_rpm_setpoint = Cpt(Setpoint, "rotation:RPM", kind="config")
    update_rate = Cpt(Setpoint, "UpdateRate", kind="config")

    @property
    def monitored(self) -> list[Any]:
        """The readback signals a monitor plan should subscribe to."""
        return [getattr(self, attr) for attr in self.read_attrs]
