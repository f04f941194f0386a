"""A small in-process run (no IOC) for tests that need real documents through a real RunEngine."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from ophyd import Component as Cpt
from ophyd import Device, Signal

H, W = 24, 32


class _Image(Signal):
    def describe(self) -> dict[str, Any]:
        desc = super().describe()
        desc[self.name].update(dtype="array", dtype_numpy="|u1", shape=[H, W])
        return desc


class StepCamera(Device):
    """Each trigger makes a new (H, W) uint8 frame and a temperature, stamped now."""

    image = Cpt(_Image, value=np.zeros((H, W), np.uint8), kind="hinted")
    temperature = Cpt(Signal, value=550.0, kind="normal")

    def trigger(self) -> Any:
        n = getattr(self, "_n", 0) + 1
        self._n = n
        stamp = time.time()
        frame = np.random.default_rng(n).integers(1, 256, (H, W), dtype=np.uint8)
        self.image.put(frame, timestamp=stamp)
        self.temperature.put(550.0 + n, timestamp=stamp)
        return super().trigger()


def record_run(RE: Any, callback: Any, num: int = 25, **md: Any) -> list[tuple[str, Any]]:
    """Run ``count`` of a StepCamera with ``callback`` subscribed; every document emitted."""
    from bluesky.plans import count

    docs: list[tuple[str, Any]] = []
    tokens = [RE.subscribe(callback), RE.subscribe(lambda n, d: docs.append((n, d)))]
    try:
        RE(count([StepCamera(name="cam")], num=num), **md)
    finally:
        for token in tokens:
            RE.unsubscribe(token)
    return docs
