"""A growth recipe: set the chamber, then cycle the shutters while the run monitors everything."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp

from atomscale_bluesky.plans.monitoring import monitored_run, run_metadata
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
    md: Mapping[str, Any] | None = None,
    acquire: bool = True,
    fps: float | None = None,
    step: float = 0.1,
) -> Plan:
    """Set substrate temperature, rotation and cells, then cycle the growth shutters while monitoring.

    Each of ``shutter_cycles`` opens the ``shutters`` (``"ga"``, ``"as"``, ``"in"``) for ``open_s``
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
        yield from wait(settle_s, step=step)
        for _ in range(shutter_cycles):
            yield from bps.mv(*[arg for cmd in commands for arg in (cmd, SHUTTER_OPEN)])
            yield from wait(open_s, step=step)
            yield from bps.mv(*[arg for cmd in commands for arg in (cmd, SHUTTER_CLOSED)])
            yield from wait(close_s, step=step)

    def close_all() -> Plan:
        yield from bps.mv(*[arg for cmd in commands for arg in (cmd, SHUTTER_CLOSED)])

    recipe = bpp.finalize_wrapper(body(), close_all())
    return (yield from monitored_run(camera, sensors, recipe, md=run_md, acquire=acquire, fps=fps))
