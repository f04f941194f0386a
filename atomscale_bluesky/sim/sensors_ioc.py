"""caproto PVGroup of simulated MBE growth sensors: temperatures, shutters, rotation, pressure, rate.

Setpoints are validated by control limits (out-of-range writes are refused, the IOC keeps serving);
readbacks follow them with first-order lags and are published at ``UpdateRate`` Hz, each with the
timestamp of its update.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from caproto import ChannelType
from caproto.server import PVGroup, SubGroup, pvproperty

K_B_EV = 8.617333e-5
SHUTTER_STATES = ["Closed", "Open"]


@dataclass(frozen=True)
class SensorsConfig:
    """Start-up options of the sensors IOC."""

    update_rate_hz: float = 10.0
    seed: int = 0
    substrate_lag_s: float = 8.0
    cell_lag_s: float = 12.0
    rotation_lag_s: float = 1.0
    # start-up cell temperatures (degC): Ga at 900 gives 1 ML/s, In cold (no flux)
    ga_c: float = 900.0
    as_c: float = 350.0
    in_c: float = 25.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.update_rate_hz) and 0 < self.update_rate_hz <= 1000):
            raise ValueError(f"update rate must be in (0, 1000] Hz, got {self.update_rate_hz}")


def _temperature(name: str, value: float, high: float) -> pvproperty:
    return pvproperty(
        name=name,
        value=value,
        units="degC",
        precision=1,
        lower_ctrl_limit=0.0,
        upper_ctrl_limit=high,
    )


def _readback(name: str, value: float, units: str, precision: int) -> pvproperty:
    return pvproperty(name=name, value=value, units=units, precision=precision, read_only=True)


def _shutter(name: str, *, read_only: bool = False) -> pvproperty:
    return pvproperty(
        name=name,
        value="Closed",
        dtype=ChannelType.ENUM,
        enum_strings=SHUTTER_STATES,
        read_only=read_only,
    )


def arrhenius(temp_c: float, ref_c: float, activation_ev: float) -> float:
    """Flux relative to its value at ``ref_c`` for an effusion cell at ``temp_c`` (degC)."""
    t, t0 = temp_c + 273.15, ref_c + 273.15
    return math.exp(-activation_ev / K_B_EV * (1.0 / t - 1.0 / t0))


class CellGroup(PVGroup):
    """One effusion cell: temperature setpoint and lagging readback."""

    temp_sp = _temperature("TempSP", 25.0, 1400.0)
    temp_rbv = _readback("Temp_RBV", 25.0, "degC", 1)


class ShutterGroup(PVGroup):
    """Cell shutters (Closed/Open) with readbacks."""

    ga = _shutter("Ga")
    ga_rbv = _shutter("Ga_RBV", read_only=True)
    as_ = _shutter("As")
    as_rbv = _shutter("As_RBV", read_only=True)
    in_ = _shutter("In")
    in_rbv = _shutter("In_RBV", read_only=True)


class GrowthSensorsIOC(PVGroup):
    """Substrate, cells, shutters, rotation, chamber pressure and growth rate of an MBE chamber."""

    substrate_temp_sp = _temperature("substrate:TempSP", 25.0, 1200.0)
    substrate_temp_rbv = _readback("substrate:Temp_RBV", 25.0, "degC", 1)
    ga = SubGroup(CellGroup, prefix="cell:Ga:")
    as_ = SubGroup(CellGroup, prefix="cell:As:")
    in_ = SubGroup(CellGroup, prefix="cell:In:")
    shutter = SubGroup(ShutterGroup, prefix="shutter:")
    rotation_rpm = pvproperty(
        name="rotation:RPM",
        value=0.0,
        units="rpm",
        precision=2,
        lower_ctrl_limit=-60.0,
        upper_ctrl_limit=60.0,
    )
    rotation_rpm_rbv = _readback("rotation:RPM_RBV", 0.0, "rpm", 2)
    azimuth_rbv = _readback("rotation:Azimuth_RBV", 0.0, "deg", 2)
    pressure_rbv = _readback("chamber:Pressure_RBV", 2e-10, "Torr", 12)
    growth_rate_rbv = _readback("growth:Rate_RBV", 0.0, "ML/s", 4)
    monolayer_period_rbv = _readback("growth:MonolayerPeriod_RBV", 0.0, "s", 3)
    update_rate = pvproperty(
        name="UpdateRate",
        value=10.0,
        units="Hz",
        precision=2,
        lower_ctrl_limit=0.1,
        upper_ctrl_limit=1000.0,
    )
    update_rate_rbv = _readback("UpdateRate_RBV", 10.0, "Hz", 2)
    ready = pvproperty(name="Ready_RBV", value=0, read_only=True)

    def __init__(self, *args: Any, config: SensorsConfig | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.config = config or SensorsConfig()
        self._rng = np.random.default_rng(self.config.seed)
        self._azimuth = 0.0
        self._rpm = 0.0

    @update_rate.putter  # type: ignore[untyped-decorator,no-redef]
    async def update_rate(self, instance: Any, value: Any) -> Any:
        await self.update_rate_rbv.write(float(value))
        return value

    def _lag(self, current: float, target: float, dt: float, tau: float) -> float:
        return target + (current - target) * math.exp(-dt / max(tau, 1e-6))

    def _noise(self, scale: float) -> float:
        return float(self._rng.normal(0.0, scale))

    async def _tick(self, dt: float) -> None:
        cfg, t = self.config, time.time()
        sub = self._lag(
            self.substrate_temp_rbv.value, self.substrate_temp_sp.value, dt, cfg.substrate_lag_s
        )
        await self.substrate_temp_rbv.write(sub + self._noise(0.02), timestamp=t)
        temps = {}
        for name, cell in (("Ga", self.ga), ("As", self.as_), ("In", self.in_)):
            value = self._lag(cell.temp_rbv.value, cell.temp_sp.value, dt, cfg.cell_lag_s)
            await cell.temp_rbv.write(value + self._noise(0.01), timestamp=t)
            temps[name] = value
        shutters = self.shutter
        opened = {}
        for name, sp, rbv in (
            ("Ga", shutters.ga, shutters.ga_rbv),
            ("As", shutters.as_, shutters.as_rbv),
            ("In", shutters.in_, shutters.in_rbv),
        ):
            if rbv.value != sp.value:
                await rbv.write(sp.value, timestamp=t)
            opened[name] = sp.value == "Open"
        self._rpm = self._lag(self._rpm, self.rotation_rpm.value, dt, cfg.rotation_lag_s)
        self._azimuth = (self._azimuth + 6.0 * self._rpm * dt) % 360.0
        await self.rotation_rpm_rbv.write(self._rpm, timestamp=t)
        await self.azimuth_rbv.write(self._azimuth, timestamp=t)
        rate = 1.0 * arrhenius(temps["Ga"], 900.0, 2.5) if temps["Ga"] > 300 else 0.0
        rate += 0.5 * arrhenius(temps["In"], 800.0, 2.4) if temps["In"] > 300 else 0.0
        await self.growth_rate_rbv.write(rate, timestamp=t)
        await self.monolayer_period_rbv.write(1.0 / rate if rate > 1e-6 else 0.0, timestamp=t)
        pressure = 2e-10 * (1.0 + 0.002 * max(sub - 25.0, 0.0))
        for name in ("Ga", "As", "In"):
            if temps[name] > 100:
                pressure += 1e-10 * math.exp(min((temps[name] - 100.0) / 300.0, 20.0))
        if opened["As"] and temps["As"] > 100:
            pressure += 5e-6 * arrhenius(temps["As"], 350.0, 1.9)
        if opened["Ga"] or opened["In"]:
            pressure += 2e-9 * rate
        await self.pressure_rbv.write(pressure * (1.0 + self._noise(0.01)), timestamp=t)

    @substrate_temp_rbv.startup  # type: ignore[untyped-decorator,no-redef]
    async def substrate_temp_rbv(self, instance: Any, async_lib: Any) -> None:
        """Publish every readback at UpdateRate Hz, forever."""
        await self.update_rate.write(self.config.update_rate_hz, verify_value=False)
        await self.update_rate_rbv.write(self.config.update_rate_hz)
        for cell, temp in (
            (self.ga, self.config.ga_c),
            (self.as_, self.config.as_c),
            (self.in_, self.config.in_c),
        ):
            await cell.temp_sp.write(temp, verify_value=False)
            await cell.temp_rbv.write(temp)
        await self._tick(0.0)
        await self.ready.write(1)
        last = time.time()
        next_t = last
        while True:
            next_t += 1.0 / float(self.update_rate.value)
            delay = next_t - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                next_t = time.time()
            now = time.time()
            await self._tick(now - last)
            last = now


def build_sensors_ioc(prefix: str, config: SensorsConfig) -> GrowthSensorsIOC:
    """Instantiate the sensors PVGroup under ``prefix`` (e.g. ``"GROWTH:"``)."""
    return GrowthSensorsIOC(prefix=prefix, config=config)
