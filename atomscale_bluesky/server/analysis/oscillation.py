"""Oscillation detection and period estimation over a window of specular intensities.

One RHEED intensity oscillation is one monolayer (rheed-physics.md B.3). The estimator fits
``trend (quadratic) + a cos(wt) + b sin(wt) + c cos(2wt) + d sin(2wt)`` by linear least squares
for each trial frequency: a coarse scan (the least-squares power of a sine/cosine pair at every
frequency of a zero-padded FFT, O(N log N)) picks the best one, a golden-section search on the
full model's residual narrows it to a thousandth of a resolution cell and a parabola through
the last three points places the minimum. The second harmonic absorbs non-sinusoidal shapes (a
saturated spot); the quadratic absorbs the slow drift of the mean as the surface roughens. The oscillation counts as
detected when it explains a given share of the detrended variance over at least ``min_cycles``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = ["OscillationFit", "estimate_period", "resample"]

GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0
CANDIDATES = 8  # spectral peaks re-scored on the real sample times
REFINE_CELLS = 1e-3  # golden-section stops at this share of a resolution cell (1 / window)


@dataclass(frozen=True)
class OscillationFit:
    """A detected oscillation: its period, amplitude (of the fundamental) and how clear it is."""

    period_s: float
    amplitude: float
    strength: float  # share of the detrended variance the oscillation explains (0..1)
    cycles: float  # window length in periods
    t_start: float
    t_end: float

    @property
    def rate(self) -> float:
        """Growth rate in monolayers per second (one oscillation per monolayer)."""
        return 1.0 / self.period_s


def resample(t: np.ndarray, y: np.ndarray, max_samples: int) -> tuple[np.ndarray, np.ndarray]:
    """At most ``max_samples`` points: block averages over equal time bins (empty bins dropped)."""
    if len(t) <= max_samples:
        return t, y
    span = float(t[-1] - t[0])
    bins = np.minimum(((t - t[0]) / span * max_samples).astype(np.int64), max_samples - 1)
    counts = np.bincount(bins, minlength=max_samples)
    keep = counts > 0
    t_mean = np.bincount(bins, weights=t, minlength=max_samples)[keep] / counts[keep]
    y_mean = np.bincount(bins, weights=y, minlength=max_samples)[keep] / counts[keep]
    return t_mean, y_mean


class _HarmonicFit:
    """Least squares of ``y`` on the trend plus the two harmonics of a trial frequency.

    The trend (quadratic) is projected out once; per frequency only the four harmonic columns
    are, and their 4x4 normal equations solved (the same fit as the full 7-column problem)."""

    def __init__(self, tau: np.ndarray, y: np.ndarray, span: float) -> None:
        u = tau / span
        self.tau = tau
        self.q, _ = np.linalg.qr(np.column_stack([np.ones_like(u), u, u * u]))
        self.y = y - self.q @ (self.q.T @ y)  # detrended
        self.rss_trend = float(self.y @ self.y)

    def solve(self, f: float) -> tuple[float, np.ndarray]:
        """Residual sum of squares of the full model at ``f``, and the harmonic coefficients
        (cos, sin, cos 2, sin 2)."""
        phase = (2 * np.pi * f) * self.tau
        c, s = np.cos(phase), np.sin(phase)
        h = np.stack([c, s, 2 * c * c - 1, 2 * s * c])  # rows: cos, sin, cos 2wt, sin 2wt
        h -= (h @ self.q) @ self.q.T
        coef = np.linalg.lstsq(h @ h.T, h @ self.y, rcond=None)[0]
        r = self.y - coef @ h
        return float(r @ r), coef

    def cost(self, f: float) -> float:
        return self.solve(f)[0]


def _coarse_frequency(
    tau: np.ndarray, detrended: np.ndarray, f_lo: float, f_hi: float, span: float
) -> float:
    """The frequency in [f_lo, f_hi] whose sine/cosine pair captures the most of the detrended
    signal: the least-squares power of every frequency of a zero-padded FFT of the signal
    interpolated onto a uniform grid (spacing at most 1/(8 span)), then the best few peaks
    re-scored on the real sample times."""
    m = len(tau)
    dt = span / (m - 1)
    grid = tau[0] + dt * np.arange(m)
    uniform = np.interp(grid, tau, detrended)
    size = 1 << int(math.ceil(math.log2(8 * m)))  # frequency spacing 1/(size dt) <= 1/(8 span)
    spec = np.fft.rfft(uniform, size)
    ones = np.fft.rfft(np.ones(m), size)  # sums of cos/sin(2 phase): the pair's normalisation
    k = np.arange(int(math.ceil(f_lo * size * dt)), min(int(f_hi * size * dt), size // 4) + 1)
    if len(k) == 0:
        return f_lo
    c2, s2 = ones.real[2 * k], -ones.imag[2 * k]
    power = _power(spec.real[k], -spec.imag[k], 0.5 * (m + c2), 0.5 * (m - c2), 0.5 * s2)
    peaks = np.flatnonzero(
        (power >= np.concatenate([[-1.0], power[:-1]]))
        & (power >= np.concatenate([power[1:], [-1.0]]))
    )
    best = peaks[np.argsort(power[peaks])[-CANDIDATES:]]
    freqs = k[best] / (size * dt)
    return float(freqs[int(np.argmax(_pair_power(tau, detrended, freqs)))])


def _pair_power(tau: np.ndarray, detrended: np.ndarray, freqs: np.ndarray) -> np.ndarray:
    """The least-squares power of a sine/cosine pair at each of ``freqs`` on the sample times."""
    phase = 2 * np.pi * freqs[:, None] * tau[None, :]
    c, s = np.cos(phase), np.sin(phase)
    return _power(c @ detrended, s @ detrended, (c * c).sum(1), (s * s).sum(1), (c * s).sum(1))


def _power(
    yc: np.ndarray, ys: np.ndarray, cc: np.ndarray, ss: np.ndarray, cs: np.ndarray
) -> np.ndarray:
    """The least-squares power of a sine/cosine pair from its projections (``yc``, ``ys``) and
    Gram entries (``cc``, ``ss``, ``cs``); 0 where the pair is degenerate."""
    det = cc * ss - cs * cs
    return (yc * yc * ss + ys * ys * cc - 2 * yc * ys * cs) / np.where(det > 0, det, np.inf)


def _refine(cost: Callable[[float], float], a: float, b: float, stop: float) -> float:
    """The minimum of ``cost`` in [a, b]: golden-section search until the bracket is narrower
    than ``stop``, then the vertex of the parabola through the best point and its neighbours
    (that close to the minimum the cost is a parabola to far better than ``stop``)."""
    c, d = b - GOLDEN * (b - a), a + GOLDEN * (b - a)
    fc, fd = cost(c), cost(d)
    while b - a > stop:
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - GOLDEN * (b - a)
            fc = cost(c)
        else:
            a, c, fc = c, d, fd
            d = a + GOLDEN * (b - a)
            fd = cost(d)
    h = d - c
    if fc < fd:
        x, left, mid, right = c, cost(c - h), fc, fd
    else:
        x, left, mid, right = d, fc, fd, cost(d + h)
    curvature = left - 2 * mid + right
    if curvature <= 0:
        return 0.5 * (a + b)
    return min(max(x + 0.5 * h * (left - right) / curvature, a), b)


def estimate_period(
    t: np.ndarray,
    y: np.ndarray,
    *,
    min_period_s: float = 0.05,
    max_period_s: float = 100.0,
    min_cycles: float = 1.5,
    min_strength: float = 0.3,
    max_samples: int = 1500,
) -> OscillationFit | None:
    """The oscillation in ``y(t)``, or None when there is none clear enough (or too few samples)."""
    t = np.asarray(t, dtype=float)
    y = np.asarray(y, dtype=float)
    ok = np.isfinite(t) & np.isfinite(y)
    t, y = t[ok], y[ok]
    if len(t) < 12:
        return None
    order = np.argsort(t, kind="stable")
    t, y = resample(t[order], y[order], max_samples)
    span = float(t[-1] - t[0])
    if len(t) < 12 or span <= 0:
        return None
    sample_rate = (len(t) - 1) / span
    f_lo = max(min_cycles / span, 1.0 / max_period_s)
    f_hi = min(1.0 / min_period_s, sample_rate / 4.0)
    if f_hi <= f_lo:
        return None
    t_mid = 0.5 * (t[0] + t[-1])
    tau = t - t_mid  # seconds, centred: the basis stays well conditioned
    model = _HarmonicFit(tau, y, span)
    if model.rss_trend <= 0:
        return None
    f0 = _coarse_frequency(tau, model.y, f_lo, f_hi, span)
    step = 1.0 / span  # one resolution cell either side
    a, b = max(f_lo * 0.9, f0 - step), min(f_hi * 1.1, f0 + step)
    f = _refine(model.cost, a, b, REFINE_CELLS * step)
    rss, coef = model.solve(f)
    strength = max(0.0, 1.0 - rss / model.rss_trend)
    cycles = span * f
    if strength < min_strength or cycles < min_cycles:
        return None
    amplitude = float(math.hypot(coef[0], coef[1]))
    return OscillationFit(1.0 / f, amplitude, strength, cycles, float(t[0]), float(t[-1]))
