"""A growth recipe: set the chamber, then cycle the shutters while the run monitors everything."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp

from atomscale_bluesky.plans.monitoring import monitored_run, monitored_signals, run_metadata
from atomscale_bluesky.plans.stubs import Plan, wait

SHUTTER_OPEN, SHUTTER_CLOSED = 1, 0


def growth_recipe(
    camera: Any,
    sensors: Any,
    *,
    substrate_temperature: float,
    rpm: float,
    shutter_cycles: int,
    open_s: float,
    close_s: float,
    cell_temperatures: Mapping[str, float] | None = None,
    shutters: tuple[str, ...] = ("ga",),
    settle_s: float = 0.0,
    temperature_tolerance: float = 5.0,
    heat_timeout_s: float = 600.0,
    md: Mapping[str, Any] | None = None,
    acquire: bool = True,
    fps: float | None = None,
    step: float = 0.1,
) -> Plan:
    """Set substrate temperature, rotation and cells, then cycle the growth shutters while monitoring.

    The shutters stay closed until the substrate readback is within ``temperature_tolerance``
    (degC) of ``substrate_temperature`` (at most ``heat_timeout_s``; then the run fails with
    TimeoutError and the shutters stay closed), then for ``settle_s`` more. Each of
    ``shutter_cycles`` opens the ``shutters`` (``"ga"``, ``"as"``, ``"in"``) for ``open_s``
    seconds (the specular spot oscillates) and closes them for ``close_s`` (it recovers).
    """
    cells = dict(cell_temperatures or {})
    devices = [camera, sensors]
    run_md = run_metadata(
        "growth_recipe",
        devices,
        md,
        plan_args={
            "substrate_temperature": substrate_temperature,
            "rpm": rpm,
            "shutter_cycles": shutter_cycles,
            "open_s": open_s,
            "close_s": close_s,
            "cell_temperatures": cells,
            "shutters": list(shutters),
            "temperature_tolerance": temperature_tolerance,
        },
        rotations_per_min=rpm,
    )
    commands = [getattr(sensors, f"shutter_{s}_cmd") for s in shutters]

    def body() -> Plan:
        setpoints: list[Any] = [sensors.substrate_temperature_setpoint, substrate_temperature]
        setpoints += [sensors.rotation_rpm_setpoint, rpm]
        for cell, temp in cells.items():
            setpoints += [getattr(sensors, f"{cell}_temperature_setpoint"), temp]
        yield from bps.mv(*setpoints)
        yield from wait_for_temperature(
            sensors.substrate_temperature,
            substrate_temperature,
            tolerance=temperature_tolerance,
            timeout=heat_timeout_s,
            step=step,
        )
        yield from wait(settle_s, step=step)
        for _ in range(shutter_cycles):
            yield from bps.mv(*[arg for cmd in commands for arg in (cmd, SHUTTER_OPEN)])
            yield from wait(open_s, step=step)
            yield from bps.mv(*[arg for cmd in commands for arg in (cmd, SHUTTER_CLOSED)])
            yield from wait(close_s, step=step)

    def close_all() -> Plan:
        yield from bps.mv(*[arg for cmd in commands for arg in (cmd, SHUTTER_CLOSED)])

    recipe = bpp.finalize_wrapper(body(), close_all())
    signals = monitored_signals(camera, sensors)
    return (yield from monitored_run(camera, signals, recipe, md=run_md, acquire=acquire, fps=fps))


def wait_for_temperature(
    readback: Any, target: float, *, tolerance: float, timeout: float, step: float = 0.1
) -> Plan:
    """Wait (checkpointed) until ``readback`` is within ``tolerance`` of ``target``."""
    deadline = time.monotonic() + timeout
    while True:
        value = yield from bps.rd(readback)
        if value is not None and abs(float(value) - target) <= tolerance:
            return float(value)
        if time.monotonic() >= deadline:
            raise TimeoutError(
                f"{readback.name} is {value} after {timeout:g} s, not within {tolerance:g} of "
                f"{target:g}: the shutters stay closed"
            )
        yield from wait(max(step, 0.05), step=max(step, 0.05))
