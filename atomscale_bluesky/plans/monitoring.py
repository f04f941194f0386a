"""Bluesky plans for growth monitoring: stream every RHEED frame and sensor readback during a run.

``monitor_growth`` watches the camera and sensors for a duration; ``count_growth`` takes triggered
snapshots; ``growth_recipe`` drives the chamber (temperatures, rotation, shutter cycles) while
monitoring. Every wait is a short sleep between checkpoints, so pause and abort act promptly.
"""

from __future__ import annotations

import time
from collections.abc import Generator, Iterable, Mapping
from typing import Any

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
from bluesky.utils import Msg

Plan = Generator[Msg, Any, Any]

IMAGE_MODE_CONTINUOUS = 2
SHUTTER_OPEN, SHUTTER_CLOSED = 1, 0


def _monitored(device: Any) -> list[Any]:
    """A device's monitorable signals (``device.monitored``), or the device itself for a signal."""
    return list(getattr(device, "monitored", [device]))


def _run_md(
    plan_name: str, devices: Iterable[Any], md: Mapping[str, Any] | None, **extra: Any
) -> dict:
    base: dict[str, Any] = {
        "plan_name": plan_name,
        "detectors": [d.name for d in devices],
        **extra,
    }
    base.update(md or {})
    return base


def wait(duration: float, *, step: float = 0.1) -> Plan:
    """Sleep ``duration`` seconds (wall clock) in steps of ``step`` s, a checkpoint before each."""
    deadline = time.monotonic() + max(0.0, duration)
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        yield from bps.checkpoint()
        yield from bps.sleep(min(step, remaining))


def start_acquisition(camera: Any, *, fps: float | None = None) -> Plan:
    """Put an areaDetector camera in Continuous mode (at ``fps`` if given) and start it."""
    if fps is not None:
        yield from bps.mv(camera.cam.acquire_period, 1.0 / fps)
    yield from bps.mv(camera.cam.image_mode, IMAGE_MODE_CONTINUOUS)
    yield from bps.mv(camera.cam.acquire, 1)


def stop_acquisition(camera: Any) -> Plan:
    """Stop an areaDetector camera (waits for Acquire_RBV to read Done)."""
    yield from bps.mv(camera.cam.acquire, 0)


def _monitored_run(
    camera: Any, sensors: Any, body: Plan, *, md: dict[str, Any], acquire: bool, fps: float | None
) -> Plan:
    """One run of ``body`` with camera + sensor monitors; the camera starts first and stops last.

    The monitors are plain messages inside the run rather than bluesky's
    ``monitor_during_wrapper``: that preprocessor keeps every message of the plan until it ends,
    which grows without bound over an hours-long growth.
    """
    signals = _monitored(camera) + (_monitored(sensors) if sensors is not None else [])
    monitoring: list[Any] = []

    def inner() -> Plan:
        for signal in signals:
            yield from bps.monitor(signal, name=f"{signal.name}_monitor")
            monitoring.append(signal)
        if acquire:
            yield from start_acquisition(camera, fps=fps)
        yield from body

    def cleanup() -> Plan:
        if acquire:
            yield from stop_acquisition(camera)
            yield from bps.sleep(0.2)  # let the last frames' monitor events arrive
        while monitoring:
            yield from bps.unmonitor(monitoring.pop())

    return (yield from bpp.run_wrapper(bpp.finalize_wrapper(inner(), cleanup()), md=md))


def snapshots(sensors: Any, period: float, duration: float, *, step: float = 0.1) -> Plan:
    """Record the sensors in the primary stream every ``period`` s for ``duration`` s."""
    deadline = time.monotonic() + duration
    while time.monotonic() < deadline:
        yield from bps.trigger_and_read([sensors])
        yield from wait(min(period, max(0.0, deadline - time.monotonic())), step=step)


def monitor_growth(
    camera: Any,
    sensors: Any,
    duration: float,
    *,
    md: Mapping[str, Any] | None = None,
    acquire: bool = True,
    fps: float | None = None,
    snapshot_period: float | None = None,
    step: float = 0.1,
) -> Plan:
    """One run monitoring every frame (image + counters) and every sensor readback for ``duration`` s.

    ``acquire`` starts the camera in Continuous mode (and stops it at the end, also on abort);
    ``snapshot_period`` additionally records all sensors in the primary stream every so many seconds.
    ``md`` (e.g. ``sample``, ``project_id``, ``tags``) goes into the start document.
    """
    devices = [camera] + ([sensors] if sensors is not None else [])
    run_md = _run_md("monitor_growth", devices, md, plan_args={"duration": duration, "fps": fps})

    if snapshot_period is None or sensors is None:
        body = wait(duration, step=step)
    else:
        body = snapshots(sensors, snapshot_period, duration, step=step)
    return (yield from _monitored_run(camera, sensors, body, md=run_md, acquire=acquire, fps=fps))


def count_growth(
    camera: Any,
    sensors: Any,
    num: int,
    *,
    delay: float | None = None,
    md: Mapping[str, Any] | None = None,
) -> Plan:
    """``num`` triggered snapshots of the camera (one new frame each) and the sensors (step style)."""
    from bluesky.plans import count

    devices = [camera] + ([sensors] if sensors is not None else [])
    run_md = _run_md("count_growth", devices, md)
    return (yield from count(devices, num=num, delay=delay or 0.0, md=run_md))


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
    run_md = _run_md(
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
    return (yield from _monitored_run(camera, sensors, recipe, md=run_md, acquire=acquire, fps=fps))
