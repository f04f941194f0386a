"""The live analysis of one RHEED stream, fed its chunks in order.

Per chunk: the specular intensity of each frame (spot tracker), then the oscillation over the
sliding window (since the shutter opened, at most ``window_periods`` periods and
``max_window_s``), then the growth rate and the monolayers since the opening; one result per
frame. A rotating stream's intensity is median-filtered over 10 degrees of rotation first, so
the brief flashes at high-symmetry azimuths do not pass for oscillations (each sample's median
is computed once and kept, so a chunk costs the new samples, not the window).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from atomscale_bluesky.server.analysis.monolayers import GrowthInterval, MonolayerCounter
from atomscale_bluesky.server.analysis.oscillation import OscillationFit, estimate_period
from atomscale_bluesky.server.analysis.results import FrameResults, StreamResults
from atomscale_bluesky.server.analysis.spot import SpotTracker

__all__ = ["AnalysisParams", "StreamAnalysis"]

NAN = float("nan")


@dataclass(frozen=True)
class AnalysisParams:
    """Tuning of the oscillation analysis."""

    min_period_s: float = 0.1
    max_period_s: float = 100.0
    window_periods: float = 8.0  # the sliding window holds at most this many periods
    max_window_s: float = 120.0
    min_cycles: float = 1.5
    min_strength: float = 0.3


def _rolling_median(y: np.ndarray, k: int) -> np.ndarray:
    if k < 3 or len(y) < k:
        return y
    half = k // 2
    padded = np.pad(y, half, mode="edge")
    return np.median(sliding_window_view(padded, k), axis=1)


class RollingMedian:
    """Rolling medians of a growing buffer, each computed once: a window's medians are the
    cached ones inside it and, within ``k // 2`` of its ends, those of its edge-padded ends
    (the same values as filtering the window alone)."""

    def __init__(self) -> None:
        self.k = 0
        self._values = np.zeros(0)  # medians of real neighbours, buffer-aligned (NaN: none)

    def drop(self, n: int) -> None:
        """The buffer lost its first ``n`` samples."""
        self._values = self._values[n:]

    def window(self, y: np.ndarray, lo: int, hi: int, k: int) -> np.ndarray:
        """The rolling median (kernel ``k``) of ``y[lo:hi]``, its ends padded with edge values."""
        half = k // 2
        if k < 3 or hi - lo < 4 * k:
            return _rolling_median(y[lo:hi], k)
        if k != self.k:
            self.k, self._values = k, np.zeros(0)
        start, end = max(len(self._values), half), len(y) - half
        if end > start:
            fresh = np.median(sliding_window_view(y[start - half : end + half], k), axis=1)
            gap = np.full(start - len(self._values), np.nan)
            self._values = np.concatenate([self._values, gap, fresh])
        left = _rolling_median(y[lo : lo + k], k)[:half]
        right = _rolling_median(y[hi - k : hi], k)[-half:]
        return np.concatenate([left, self._values[lo + half : hi - half], right])


class StreamAnalysis:
    """Analysis state of one stream: spot, intensity history, rate history, results."""

    def __init__(
        self,
        results: StreamResults,
        *,
        rotations_per_min: float = 0.0,
        params: AnalysisParams | None = None,
    ) -> None:
        self.results = results
        self.rpm = abs(rotations_per_min or 0.0)
        self.params = params or AnalysisParams()
        self.tracker = SpotTracker()
        self.counter = MonolayerCounter()
        self._t = np.zeros(0)
        self._y = np.zeros(0)
        self._median = RollingMedian()
        self._interval: GrowthInterval | None = None
        self._fit: OscillationFit | None = None
        self._last_window: tuple[float, float] | None = None

    def add_chunk(
        self,
        frames: np.ndarray,
        times: np.ndarray,
        first_frame: int,
        interval_at: Callable[[float], GrowthInterval | None],
    ) -> None:
        """Analyse one chunk of frames (N, H, W) taken at ``times`` (Unix s)."""
        y = self.tracker.intensities(frames)
        self._t = np.concatenate([self._t, times])
        self._y = np.concatenate([self._y, y])
        interval = interval_at(float(times[-1]))
        if interval != self._interval and (
            interval is None or self._interval is None or interval.opened != self._interval.opened
        ):
            self.counter.reset()
            self._fit = None
        self._interval = interval
        self._fit_window(float(times[-1]))
        self._prune(float(times[-1]))
        self._publish(frames.shape[0], times, y, first_frame)

    def retime_last(self, start: float, n: int, spacing: float) -> None:
        """Re-time the last ``n`` intensities (the last chunk) with a measured frame spacing."""
        if 0 < n <= len(self._t):
            self._t[-n:] = start + np.arange(n) * spacing
            self._last_window = None

    def _window(self, t_end: float) -> tuple[float, float]:
        p = self.params
        lo = t_end - p.max_window_s
        if self._fit is not None:
            lo = max(lo, t_end - p.window_periods * self._fit.period_s)
        hi = t_end
        if self._interval is not None:
            lo = max(lo, self._interval.opened)
            if self._interval.closed is not None:
                hi = min(hi, self._interval.closed)
        return lo, hi

    def _fit_window(self, t_end: float) -> None:
        lo, hi = self._window(t_end)
        if hi <= lo or (lo, hi) == self._last_window:
            return
        self._last_window = (lo, hi)
        index = np.flatnonzero((self._t >= lo) & (self._t <= hi))
        t, y = self._t[index], self._y[index]
        if len(t) < 12:
            return
        if self.rpm > 0:
            rate = (len(t) - 1) / max(t[-1] - t[0], 1e-9)
            k = int(min(0.5, 10.0 / (6.0 * self.rpm)) * rate) | 1
            first, last = int(index[0]), int(index[-1]) + 1
            if last - first == len(index):  # a contiguous stretch of the buffer
                y = self._median.window(self._y, first, last, k)
            else:
                y = _rolling_median(y, k)
        p = self.params
        fit = estimate_period(
            t, y, min_period_s=p.min_period_s, max_period_s=p.max_period_s,
            min_cycles=p.min_cycles, min_strength=p.min_strength,
        )  # fmt: skip
        if fit is None:
            return
        self._fit = fit
        self.counter.update(fit.t_start, fit.rate)

    def _prune(self, t_end: float) -> None:
        """Forget intensities older than any window can reach."""
        lo = t_end - self.params.max_window_s
        if self._interval is not None:
            lo = max(lo, min(self._interval.opened, t_end - self.params.max_window_s))
        if len(self._t) and self._t[0] < lo - 1.0:
            keep = self._t >= lo
            dropped = len(keep) - int(keep.sum())
            if keep[dropped:].all():  # the oldest samples: the cached medians stay aligned
                self._median.drop(dropped)
            else:
                self._median = RollingMedian()
            self._t, self._y = self._t[keep], self._y[keep]

    def _publish(self, n: int, times: np.ndarray, y: np.ndarray, first_frame: int) -> None:
        fit = self._fit
        period = fit.period_s if fit is not None else NAN
        opened = self._interval.opened if self._interval is not None else self.counter.first_start
        closed = self._interval.closed if self._interval is not None else None
        rates, layers, since = [], [], []
        for t in times:
            t = float(t)
            growing = opened is not None and t >= opened and (closed is None or t < closed)
            rates.append(self.counter.rate_at(t) if growing and fit is not None else NAN)
            if opened is None or t < opened:
                layers.append(NAN)
                since.append(NAN)
                continue
            count = self.counter.count(opened, t if closed is None else min(t, closed))
            layers.append(NAN if count is None else count)
            since.append(t - opened if self._interval is not None else NAN)
        self.results.append(
            FrameResults(
                frame_numbers=range(first_frame, first_frame + n),
                unix_s=times.tolist(),
                specular_intensity=y.tolist(),
                oscillation_period=[period] * n,
                growth_rate=rates,
                monolayers=layers,
                since_open_s=since,
            )
        )
        spot = self.tracker.spot
        self.results.update_status(
            spot=None if spot is None else {"row": spot.row, "col": spot.col, "half": spot.half},
            oscillation_detected=fit is not None,
            oscillation_strength=None if fit is None else fit.strength,
            oscillation_cycles=None if fit is None else fit.cycles,
            shutter_opened_unix_s=self._interval.opened if self._interval else None,
            shutter_closed_unix_s=self._interval.closed if self._interval else None,
            last_unix_s=float(times[-1]) if len(times) else None,
        )
