"""Let the camera IOC follow the sensors IOC: shutter, rotation and growth rate drive the pattern.

A caproto asyncio client inside the camera IOC subscribes to the sensors' readbacks and writes them
to the camera's own ``sim:`` PVs, so the growth state is visible (and testable) in one place.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

log = logging.getLogger(__name__)


class SimPV(Protocol):
    """One PV of the camera's ``sim:`` group: its current value and an asynchronous write."""

    @property
    def value(self) -> Any: ...

    async def write(self, value: Any) -> Any: ...


class FollowingSim(Protocol):
    """The camera's ``sim:`` PVs that following the sensors reads and writes."""

    follow_sensors: SimPV
    shutter_open: SimPV
    rotation_rpm: SimPV
    monolayer_period: SimPV


# sensors readback (after the prefix) -> the camera's sim attribute it drives
FOLLOWED = {
    "shutter:Ga_RBV": "shutter_open",
    "rotation:RPM_RBV": "rotation_rpm",
    "growth:MonolayerPeriod_RBV": "monolayer_period",
}


async def _apply(sim: FollowingSim, attr: str, value: Any) -> None:
    if sim.follow_sensors.value != "On":
        return
    pv: SimPV = getattr(sim, attr)
    if attr == "shutter_open":
        value = "Open" if value in (1, "Open", b"Open") else "Closed"
        if value == pv.value:
            return
    elif attr == "monolayer_period":
        value = float(value)
        if value <= 0:  # no flux: keep the last period
            return
        value = min(max(value, 0.05), 1000.0)
    else:
        value = float(value)
    try:
        await pv.write(value)
    except Exception as exc:  # a bad sensor value must not stop the camera
        log.warning("could not follow %s=%r: %s", attr, value, exc)


async def follow_sensors(sim: FollowingSim, prefix: str) -> None:
    """Subscribe to the sensors IOC under ``prefix`` and mirror its state into the ``sim`` PVs."""
    from caproto.asyncio.client import Context

    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
    ctx = Context()
    pvs = await ctx.get_pvs(*(prefix + name for name in FOLLOWED), timeout=None)
    keep: list[Any] = []  # callbacks are held weakly by caproto
    for pv, attr in zip(pvs, FOLLOWED.values(), strict=True):
        await pv.wait_for_connection(timeout=None)
        sub = pv.subscribe(data_type="native")

        def callback(sub: Any, response: Any, attr: str = attr) -> None:
            value = response.data[0]
            if isinstance(value, bytes):
                value = value.decode()
            loop.call_soon_threadsafe(queue.put_nowait, (attr, value))

        keep.append((sub, callback))
        sub.add_callback(callback)
    log.info("camera follows sensors IOC %s", prefix)
    while True:
        attr, value = await queue.get()
        await _apply(sim, attr, value)
