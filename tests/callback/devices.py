"""In-memory ophyd devices for RunEngine tests: a camera whose every read is a new frame."""

from __future__ import annotations

import threading
import time

import numpy as np
from ophyd import Component as Cpt
from ophyd import Device, Signal

T0 = 1_700_000_000.0


class FrameSignal(Signal):
    """Each ``get`` produces the next frame of a deterministic sequence, stamped like an IOC."""

    def __init__(self, *args, shape=(48, 64), fps=30.0, **kwargs):
        super().__init__(*args, value=np.zeros(shape, np.uint8), **kwargs)
        self.shape = tuple(shape)
        self.fps = fps
        self.produced: list[tuple[float, np.ndarray]] = []

    def frame(self, n: int) -> np.ndarray:
        return np.random.default_rng(n).integers(1, 256, self.shape, dtype=np.uint8)

    def get(self, **kwargs):
        n = len(self.produced)
        frame, ts = self.frame(n), T0 + n / self.fps
        self.produced.append((ts, frame))
        self._readback = frame
        self._metadata["timestamp"] = ts
        return frame

    def describe(self):
        desc = super().describe()
        desc[self.name].update(dtype="array", shape=list(self.shape), dtype_numpy="|u1")
        return desc


class MemoryCamera(Device):
    image = Cpt(FrameSignal, kind="hinted")
    temperature = Cpt(Signal, value=600.0, kind="normal")
    acquire_period = Cpt(Signal, value=1 / 30.0, kind="config")


class FrameStreamer:
    """Puts new frames into a Signal from a background thread, as an EPICS monitor would."""

    def __init__(self, signal: Signal, n: int, fps: float, shape=(32, 40)):
        self.signal, self.n, self.fps, self.shape = signal, n, fps, shape
        self.produced: list[tuple[float, np.ndarray]] = []
        self._thread = threading.Thread(target=self._run, name="fake-ca-monitor", daemon=True)

    def start(self):
        self._thread.start()

    def join(self):
        self._thread.join()

    def _run(self):
        for n in range(self.n):
            frame = np.random.default_rng(1000 + n).integers(1, 256, self.shape, dtype=np.uint8)
            ts = time.time()
            self.produced.append((ts, frame))
            self.signal.put(frame, timestamp=ts)
            time.sleep(1.0 / self.fps)
