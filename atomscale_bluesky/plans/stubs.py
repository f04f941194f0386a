"""Plan stubs the growth plans are built from: interruptible waits and starting/stopping a camera."""

from __future__ import annotations

import time
from collections.abc import Generator
from typing import Any

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
from bluesky.utils import Msg

Plan = Generator[Msg, Any, Any]

IMAGE_MODE_CONTINUOUS = 2


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


def is_acquiring(camera: Any) -> Plan:
    """Whether an areaDetector camera is acquiring now (reads ``cam.acquire``)."""
    value = yield from bps.rd(camera.cam.acquire)
    return _acquiring(value)


def _acquiring(value: Any) -> bool:
    """``Acquire`` as an int (1), a string ("Acquire") or an enum member of either."""
    value = getattr(value, "value", value)
    if isinstance(value, str):
        return value.strip().lower() == "acquire"
    return bool(value)


def acquiring(camera: Any, body: Plan, *, fps: float | None = None) -> Plan:
    """Run ``body`` with the camera acquiring, and leave the camera as it was found.

    A camera already acquiring (an operator's live view) keeps acquiring with its settings
    untouched unless ``fps`` asks for another rate, which is set back afterwards. A stopped
    camera is started in Continuous mode and stopped again at the end, also on abort.
    """
    was_acquiring = yield from is_acquiring(camera)
    period = yield from bps.rd(camera.cam.acquire_period)
    mode = yield from bps.rd(camera.cam.image_mode)

    def start() -> Plan:
        if not was_acquiring:
            yield from start_acquisition(camera, fps=fps)
        elif fps is not None:
            yield from bps.mv(camera.cam.acquire_period, 1.0 / fps)
        return (yield from body)

    def restore() -> Plan:
        if not was_acquiring:
            yield from stop_acquisition(camera)
            yield from bps.mv(camera.cam.image_mode, mode)
        if fps is not None and period is not None:
            yield from bps.mv(camera.cam.acquire_period, period)

    return (yield from bpp.finalize_wrapper(start(), restore()))
