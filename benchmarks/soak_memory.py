"""The soak's memory trace: resident memory sampled fast enough to see the chunk cycle.

Each camera's pending chunk (2 s of frames, 74 MB raw at 640x480 and 120 fps, plus its compressed
frames) fills and is released every chunk length, so the resident size swings by about 100 MB
every 2 s. A sample every 2 s catches that cycle at a slowly drifting phase and draws a false
sawtooth minutes long. Sampled at 10 Hz, every window of several chunk lengths holds a trough
(what stays alive between chunks) and a peak (plus the chunk in flight); growth is the change of
the windows' troughs, and of their peaks, from the first minute after warm-up to the last.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class MemoryTrace:
    """What ``read`` returns (named byte counts) every ``period_s`` on a thread of its own, with
    the time of each sample (s from the ``t0`` given to :meth:`start`)."""

    read: Callable[[], dict[str, int]]
    period_s: float = 0.1
    times: list[float] = field(default_factory=list)
    values: dict[str, list[int]] = field(default_factory=lambda: collections.defaultdict(list))
    _done: threading.Event = field(default_factory=threading.Event)

    def start(self, t0: float) -> None:
        threading.Thread(target=self._run, args=(t0,), daemon=True, name="soak-trace").start()

    def stop(self) -> None:
        self._done.set()

    def _run(self, t0: float) -> None:
        while not self._done.wait(self.period_s):
            for name, value in self.read().items():
                self.values[name].append(value)
            self.times.append(time.monotonic() - t0)

    def write(self, path: Path) -> None:
        """Every sample as a tab-separated row (s, then bytes of each series)."""
        names = list(self.values)
        with path.open("w") as fh:
            print("\t".join(["t", *names]), file=fh)
            for i, t in enumerate(self.times):
                print("\t".join([f"{t:.2f}", *(str(self.values[n][i]) for n in names)]), file=fh)


@dataclass(frozen=True)
class Windows:
    """Per window of ``window_s``: start time, trough and peak of one series (bytes)."""

    starts: np.ndarray
    troughs: np.ndarray
    peaks: np.ndarray


def windows(times: list[float], values: list[int], start: float, end: float,
            window_s: float) -> Windows:  # fmt: skip
    """The troughs and peaks of ``values`` in consecutive windows from ``start`` to ``end``."""
    t = np.asarray(times, dtype=float)
    v = np.asarray(values, dtype=float)
    starts, troughs, peaks = [], [], []
    edge = start
    while edge + window_s <= end:
        inside = v[(t >= edge) & (t < edge + window_s)]
        if inside.size:
            starts.append(edge)
            troughs.append(inside.min())
            peaks.append(inside.max())
        edge += window_s
    return Windows(np.asarray(starts), np.asarray(troughs), np.asarray(peaks))


def growth_figures(trace: MemoryTrace, name: str, warmup: float, plan_wall: float,
                   window_s: float = 10.0) -> dict[str, Any]:  # fmt: skip
    """For series ``name``, over windows of ``window_s`` after warm-up: growth of the troughs and
    of the peaks (median of the last minute's windows minus that of the first minute after
    warm-up, MB; shorter runs compare a fifth of the run each), the troughs' least-squares trend
    (MB per minute), the median swing within a window (the chunks in flight) and the troughs
    every 30 s."""
    n = len(trace.times)
    w = windows(trace.times, trace.values[name][:n], warmup, plan_wall, window_s)
    if w.starts.size < 4:
        return {f"{name}_trough_growth_mb": float("nan"), f"{name}_peak_growth_mb": float("nan")}
    span = min(60.0, (plan_wall - warmup) / 5)
    early = w.starts < warmup + span
    late = w.starts + window_s > plan_wall - span
    troughs, peaks = w.troughs / 1e6, w.peaks / 1e6
    every = max(1, round(30.0 / window_s))
    return {
        f"{name}_trough_growth_mb": float(np.median(troughs[late]) - np.median(troughs[early])),
        f"{name}_peak_growth_mb": float(np.median(peaks[late]) - np.median(peaks[early])),
        f"{name}_trough_trend_mb_per_min": float(np.polyfit(w.starts / 60.0, troughs, 1)[0]),
        f"{name}_swing_mb": float(np.median(peaks - troughs)),
        f"{name}_troughs_mb_every_30s": " ".join(f"{v:.0f}" for v in troughs[::every]),
        f"{name}_peaks_mb_every_30s": " ".join(f"{v:.0f}" for v in peaks[::every]),
    }


def chunk_cycle(trace: MemoryTrace, start: float, seconds: float = 10.0) -> str:
    """The RSS (MB) at every sample of ``seconds`` from ``start``: the chunk cycle, drawn."""
    t = np.asarray(trace.times)
    r = np.asarray(trace.values["rss"][: t.size]) / 1e6
    inside = (t >= start) & (t < start + seconds)
    return " ".join(f"{v:.0f}" for v in r[inside])
