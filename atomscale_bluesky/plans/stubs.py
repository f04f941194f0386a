"""Plan stubs the growth plans are built from: interruptible waits and starting/stopping a camera."""

from __future__ import annotations

import time
from collections.abc import Generator
from typing import Any

import bluesky.plan_stubs as bps
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
