"""ophyd devices stamping their readings on an IOC clock offset from this computer's."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from ophyd import Component as Cpt
from ophyd import Device, Signal

H, W = 24, 32


class IocClockImage(Signal):
    """Each read is a new frame stamped on the IOC's clock (``ioc_offset_s`` from this host's),
    or with no time at all when ``stamped`` is False."""

    ioc_offset_s = 0.0
    stamped = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, value=np.zeros((H, W), np.uint8), **kwargs)
        self.produced: list[tuple[float, np.ndarray]] = []

    def get(self, **kwargs: Any) -> np.ndarray:
        n = len(self.produced)
        frame = np.random.default_rng(n).integers(1, 256, (H, W), dtype=np.uint8)
        ts = time.time() + self.ioc_offset_s
        self.produced.append((ts, frame))
        self._readback = frame
        self._metadata["timestamp"] = ts if self.stamped else None
        return frame

    def describe(self) -> dict[str, Any]:
        desc = super().describe()
        desc[self.name].update(dtype="array", shape=[H, W], dtype_numpy="|u1")
        return desc


class IocClockReading(Signal):
    """A sensor whose every read is a new value stamped on the IOC's clock."""

    ioc_offset_s = 0.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, value=600.0, **kwargs)
        self.produced: list[tuple[float, float]] = []

    def get(self, **kwargs: Any) -> float:
        value = 600.0 + len(self.produced) / 10
        ts = time.time() + self.ioc_offset_s
        self.produced.append((ts, value))
        self._readback = value
        self._metadata["timestamp"] = ts
        return value


class IocClockCamera(Device):
    image = Cpt(IocClockImage, kind="hinted")
    temperature = Cpt(IocClockReading, kind="normal")


def ioc_clock_camera(ioc_offset_s: float, *, stamped: bool = True) -> IocClockCamera:
    """A camera on an IOC clock ``ioc_offset_s`` from this host's (frames unstamped if not ``stamped``)."""
    cam = IocClockCamera(name="cam")
    cam.image.ioc_offset_s = cam.temperature.ioc_offset_s = ioc_offset_s
    cam.image.stamped = stamped
    return cam
