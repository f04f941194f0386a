"""Runs that stream every RHEED frame and sensor readback: monitored for a duration, or counted.

``monitor_growth`` watches the camera and sensors for a duration; ``count_growth`` takes triggered
snapshots. Every wait is a short sleep between checkpoints, so pause and abort act promptly.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp

from atomscale_bluesky.plans.stubs import Plan, start_acquisition, stop_acquisition, wait


def _monitored(device: Any) -> list[Any]:
    """A device's monitorable signals (``device.monitored``), or the device itself for a signal."""
    return list(getattr(device, "monitored", [device]))


def run_metadata(
    plan_name: str, devices: Iterable[Any], md: Mapping[str, Any] | None, **extra: Any
) -> dict[str, Any]:
    """A start document's metadata: plan name, detector names and ``extra``; ``md`` overrides them."""
    base: dict[str, Any] = {
        "plan_name": plan_name,
        "detectors": [d.name for d in devices],
        **extra,
    }
    base.update(md or {})
    return base


def monitored_run(
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
    run_md = run_metadata(
        "monitor_growth", devices, md, plan_args={"duration": duration, "fps": fps}
    )

    if snapshot_period is None or sensors is None:
        body = wait(duration, step=step)
    else:
        body = snapshots(sensors, snapshot_period, duration, step=step)
    return (yield from monitored_run(camera, sensors, body, md=run_md, acquire=acquire, fps=fps))


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
    run_md = run_metadata("count_growth", devices, md)
    return (yield from count(devices, num=num, delay=delay or 0.0, md=run_md))
