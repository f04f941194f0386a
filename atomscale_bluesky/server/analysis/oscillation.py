"""Oscillation detection and period estimation over a window of specular intensities.

One RHEED intensity oscillation is one monolayer (rheed-physics.md B.3). The estimator fits
``trend (quadratic) + a cos(wt) + b sin(wt) + c cos(2wt) + d sin(2wt)`` by linear least squares
for each trial frequency: a coarse scan over frequencies picks the best one, a golden-section
search refines it. The second harmonic absorbs non-sinusoidal shapes (a saturated spot); the
quadratic absorbs the slow drift of the mean as the surface roughens. The oscillation counts as
detected when it explains a given share of the detrended variance over at least ``min_cycles``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["OscillationFit", "estimate_period", "resample"]

GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0


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


def _trend_basis(tau: np.ndarray) -> np.ndarray:
    return np.column_stack([np.ones_like(tau), tau, tau * tau])


def _residual(basis: np.ndarray, y: np.ndarray) -> float:
    coef, *_ = np.linalg.lstsq(basis, y, rcond=None)
    r = y - basis @ coef
    return float(r @ r)


def _model_basis(trend: np.ndarray, tau: np.ndarray, omega: float) -> np.ndarray:
    phase = omega * tau
    return np.column_stack(
        [trend, np.cos(phase), np.sin(phase), np.cos(2 * phase), np.sin(2 * phase)]
    )


def _coarse_frequency(tau: np.ndarray, detrended: np.ndarray, freqs: np.ndarray) -> float:
    """The trial frequency whose sine/cosine pair captures the most of the detrended signal."""
    best, best_power = float(freqs[0]), -1.0
    for block in np.array_split(freqs, max(1, len(freqs) // 64)):
        phase = 2 * np.pi * block[:, None] * tau[None, :]
        c, s = np.cos(phase), np.sin(phase)
        yc, ys = c @ detrended, s @ detrended
        cc, ss, cs = (c * c).sum(1), (s * s).sum(1), (c * s).sum(1)
        det = cc * ss - cs * cs
        power = (yc * yc * ss + ys * ys * cc - 2 * yc * ys * cs) / np.where(det > 0, det, np.inf)
        i = int(np.argmax(power))
        if power[i] > best_power:
            best, best_power = float(block[i]), float(power[i])
    return best


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
    trend = _trend_basis(tau / span)
    trend_coef, *_ = np.linalg.lstsq(trend, y, rcond=None)
    detrended = y - trend @ trend_coef
    rss_trend = float(detrended @ detrended)
    if rss_trend <= 0:
        return None
    n_freqs = int(min(4000, max(16, (f_hi - f_lo) * span * 8)))
    freqs = np.linspace(f_lo, f_hi, n_freqs)
    f0 = _coarse_frequency(tau, detrended, freqs)

    def cost(f: float) -> float:
        return _residual(_model_basis(trend, tau, 2 * np.pi * f), y)

    step = 1.0 / span  # one resolution cell either side
    a, b = max(f_lo * 0.9, f0 - step), min(f_hi * 1.1, f0 + step)
    c, d = b - GOLDEN * (b - a), a + GOLDEN * (b - a)
    fc, fd = cost(c), cost(d)
    while b - a > 1e-6 * f0:
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - GOLDEN * (b - a)
            fc = cost(c)
        else:
            a, c, fc = c, d, fd
            d = a + GOLDEN * (b - a)
            fd = cost(d)
    f = 0.5 * (a + b)
    basis = _model_basis(trend, tau, 2 * np.pi * f)
    coef, *_ = np.linalg.lstsq(basis, y, rcond=None)
    resid = y - basis @ coef
    strength = max(0.0, 1.0 - float(resid @ resid) / rss_trend)
    cycles = span * f
    if strength < min_strength or cycles < min_cycles:
        return None
    amplitude = float(math.hypot(coef[3], coef[4]))
    return OscillationFit(1.0 / f, amplitude, strength, cycles, float(t[0]), float(t[-1]))
