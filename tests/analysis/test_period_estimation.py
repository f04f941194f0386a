"""Oscillation period estimation on synthetic RHEED oscillations; spot finding on the simulator.

Property: any period, phase, noise, damping and frame rate within range -> the period is within
2% after three oscillations. Hypothesis runs derandomized, so the examples are the same each run.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from atomscale_bluesky.server.analysis.monolayers import MonolayerCounter, ShutterHistory
from atomscale_bluesky.server.analysis.oscillation import estimate_period
from atomscale_bluesky.server.analysis.spot import SpotTracker, find_spot
from atomscale_bluesky.server.analysis.stream_analysis import RollingMedian, _rolling_median
from atomscale_bluesky.sim.growth import GrowthModel, GrowthParams
from atomscale_bluesky.sim.pattern import FrameInputs, PatternConfig, RheedPattern


def synthetic(
    period: float, phase: float, noise: float, damping_periods: float, fps: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Three oscillations after a shutter opening: drifting mean, damped cosine, Gaussian noise
    (``noise`` is the noise's standard deviation over the oscillation amplitude)."""
    rng = np.random.default_rng(seed)
    t = np.arange(0.0, 3.0 * period, 1.0 / fps)
    tau = damping_periods * period
    amplitude = 0.3
    y = (
        0.8
        - 0.15 * (1 - np.exp(-t / tau))
        + amplitude * np.exp(-t / tau) * np.cos(2 * math.pi * t / period + phase)
        + rng.normal(0.0, noise * amplitude, len(t))
    )
    return t + 1.7e9, y


@settings(max_examples=80, deadline=None, derandomize=True)
@given(
    period=st.floats(0.5, 10.0),
    phase=st.floats(0.0, 2 * math.pi),
    noise=st.floats(0.0, 0.15),
    damping_periods=st.floats(5.0, 60.0),
    samples_per_period=st.floats(20.0, 240.0),
    seed=st.integers(0, 2**16),
)
def test_period_within_two_percent_after_three_oscillations(
    period: float,
    phase: float,
    noise: float,
    damping_periods: float,
    samples_per_period: float,
    seed: int,
) -> None:
    fps = samples_per_period / period
    t, y = synthetic(period, phase, noise, damping_periods, fps, seed)
    fit = estimate_period(t, y)
    assert fit is not None
    assert abs(fit.period_s / period - 1.0) < 0.02, (fit, period)
    assert fit.rate == 1.0 / fit.period_s


def test_noise_alone_is_no_oscillation() -> None:
    rng = np.random.default_rng(3)
    t = np.arange(0.0, 10.0, 1 / 30) + 1.7e9
    assert estimate_period(t, 0.5 + rng.normal(0.0, 0.05, len(t))) is None


def test_too_little_data_is_no_oscillation() -> None:
    t = np.arange(0.0, 1.0, 0.1)
    assert estimate_period(t, np.cos(2 * math.pi * t)) is None


def test_simulated_frames_spot_and_period() -> None:
    """Frames of the simulator: the spot is found on the specular window and the period of the
    tracked intensity matches the growth model's."""
    pattern = RheedPattern(PatternConfig(width=320, height=240, seed=1))
    model = GrowthModel(GrowthParams(monolayer_period_s=1.4), t0=0.0)
    model.set_shutter(True, 0.0)
    fps = 25.0
    times = np.arange(0.0, 4.5, 1 / fps)
    frames = []
    for t in times:
        state = model.advance(float(t))
        frames.append(pattern.render(FrameInputs(state.specular, 0.0, state.roughness)))
    stack = np.stack(frames)
    spot = find_spot(stack[:10])
    rows, cols = pattern.specular_window(half=spot.half)
    assert rows.start <= spot.row < rows.stop and cols.start <= spot.col < cols.stop
    tracker = SpotTracker()
    y = np.concatenate([tracker.intensities(stack[k : k + 50]) for k in range(0, len(stack), 50)])
    fit = estimate_period(times, y)
    assert fit is not None and abs(fit.period_s / 1.4 - 1) < 0.02


def test_growth_interval_from_shutter_channels() -> None:
    history = ShutterHistory()
    history.extend([(10.0, "ga", 1.0), (20.0, "ga", 0.0), (30.0, "ga", 1.0), (40.0, "ga", 0.0)])
    history.extend([(5.0, "as", 0.0)])  # an earlier point: the history is replayed
    assert history.interval_at(15.0).opened == 10.0  # type: ignore[union-attr]
    later = history.interval_at(35.0)
    assert later is not None and later.opened == 30.0 and later.closed == 40.0
    assert history.interval_at(9.0) is None


def test_monolayer_counter_integrates_rate_history() -> None:
    counter = MonolayerCounter()
    assert counter.count(0.0, 5.0) is None
    counter.update(2.0, 1.0)  # first estimate stands for the time before it too
    assert counter.count(0.0, 5.0) == 5.0
    counter.update(4.0, 2.0)
    assert counter.count(0.0, 5.0) == 4.0 + 2.0
    counter.update(3.0, 0.5)  # a newer window from t=3 replaces later segments
    assert counter.count(0.0, 5.0) == 3.0 + 1.0


def brute_force_period(t: np.ndarray, y: np.ndarray) -> float | None:
    """The reference: the same model fitted by full least squares at every frequency of a dense
    grid (1/(8 span) apart), the best refined by golden-section search on the full 7-column
    least-squares residual; None when not detected (estimate_period's defaults)."""
    span = float(t[-1] - t[0])
    f_lo = max(1.5 / span, 1.0 / 100.0)
    f_hi = min(1.0 / 0.05, (len(t) - 1) / span / 4.0)
    tau = t - 0.5 * (t[0] + t[-1])
    u = tau / span
    trend = np.column_stack([np.ones_like(u), u, u * u])

    def rss(f: float, with_harmonics: bool = True) -> float:
        phase = 2 * math.pi * f * tau
        columns = [np.cos(phase), np.sin(phase), np.cos(2 * phase), np.sin(2 * phase)]
        basis = np.column_stack([trend, *columns]) if with_harmonics else trend
        coef, *_ = np.linalg.lstsq(basis, y, rcond=None)
        r = y - basis @ coef
        return float(r @ r)

    def pair_rss(f: float) -> float:
        phase = 2 * math.pi * f * tau
        basis = np.column_stack([trend, np.cos(phase), np.sin(phase)])
        coef, *_ = np.linalg.lstsq(basis, y, rcond=None)
        r = y - basis @ coef
        return float(r @ r)

    freqs = np.arange(f_lo, f_hi, 1.0 / (8 * span))
    f0 = float(freqs[int(np.argmin([pair_rss(f) for f in freqs]))])
    golden = (math.sqrt(5.0) - 1.0) / 2.0
    a, b = max(f_lo * 0.9, f0 - 1 / span), min(f_hi * 1.1, f0 + 1 / span)
    while b - a > 1e-7 * f0:
        c, d = b - golden * (b - a), a + golden * (b - a)
        if rss(c) < rss(d):
            b = d
        else:
            a = c
    f = 0.5 * (a + b)
    strength = 1.0 - rss(f) / rss(f, with_harmonics=False)
    return 1.0 / f if strength >= 0.3 and span * f >= 1.5 else None


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    period=st.floats(0.3, 12.0),
    cycles=st.floats(2.0, 15.0),
    samples_per_period=st.floats(8.0, 60.0),
    jitter=st.floats(0.0, 0.4),
    gap=st.floats(0.0, 0.2),
    noise=st.floats(0.0, 2.0),
    drift=st.floats(-0.3, 0.3),
    second_harmonic=st.floats(0.0, 0.6),
    seed=st.integers(0, 2**16),
)
def test_period_agrees_with_brute_force_least_squares(
    period: float,
    cycles: float,
    samples_per_period: float,
    jitter: float,
    gap: float,
    noise: float,
    drift: float,
    second_harmonic: float,
    seed: int,
) -> None:
    """Noisy, unevenly sampled (jitter, a gap), drifting, non-sinusoidal oscillations: the fast
    estimator finds what the dense least-squares scan finds (detection and period)."""
    rng = np.random.default_rng(seed)
    dt = period / samples_per_period
    t = np.arange(0.0, cycles * period, dt)
    t = t + rng.uniform(-jitter, jitter, len(t)) * dt
    cut = int(rng.uniform(0.2, 0.8) * len(t))
    t = np.delete(t, np.s_[cut : cut + int(gap * len(t))])
    phase = 2 * math.pi * t / period + rng.uniform(0, 2 * math.pi)
    y = (
        0.8
        + drift * (t / t[-1]) ** 2
        + 0.2 * (np.cos(phase) + second_harmonic * np.cos(2 * phase + 1.0))
        + rng.normal(0.0, noise * 0.2, len(t))
    )
    t = t + 1.7e9
    fit = estimate_period(t, y)
    reference = brute_force_period(t, y)
    assert (fit is None) == (reference is None), (fit, reference)
    if fit is not None and reference is not None:
        assert abs(fit.period_s / reference - 1.0) < 1e-5, (fit, reference)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    updates=st.lists(st.tuples(st.floats(0.0, 100.0), st.floats(0.01, 5.0)), min_size=1),
    start=st.floats(-10.0, 110.0),
    length=st.floats(0.0, 120.0),
)
def test_monolayer_count_is_the_integral_of_the_rate_history(
    updates: list[tuple[float, float]], start: float, length: float
) -> None:
    """The count equals the rate history summed piece by piece between its segment starts (the
    first rate standing for the time before it), after any sequence of window updates."""
    counter = MonolayerCounter()
    history: list[tuple[float, float]] = []
    for window_start, rate in updates:
        counter.update(window_start, rate)
        history = [seg for seg in history if seg[0] < window_start] + [(window_start, rate)]
    assert list(counter.segments()) == history
    end = start + length
    starts = [s for s, _ in history]
    edges = [start, *(s for s in starts[1:] if start < s < end), end]
    pieces = zip(edges, edges[1:], strict=False)
    expected = sum(counter.rate_at(lo) * (hi - lo) for lo, hi in pieces)
    assert counter.count(start, end) == pytest.approx(expected, rel=1e-9, abs=1e-9)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    steps=st.lists(
        st.tuples(
            st.integers(1, 90),  # samples appended
            st.integers(0, 60),  # samples dropped from the start
            st.sampled_from([1, 3, 5, 9, 21]),  # kernel
            st.floats(0.0, 1.0),  # window start, as a share of the buffer
            st.one_of(st.just(1.0), st.floats(0.0, 1.0)),  # window end (1: newest sample)
        ),
        min_size=1,
        max_size=25,
    ),
    seed=st.integers(0, 2**16),
)
def test_cached_rolling_median_equals_filtering_the_window_alone(
    steps: list[tuple[int, int, int, float, float]], seed: int
) -> None:
    """A growing, pruned buffer: every window's medians from the cache are exactly those of
    median-filtering the window on its own (edges padded with edge values)."""
    rng = np.random.default_rng(seed)
    cache = RollingMedian()
    y = np.zeros(0)
    for added, dropped, k, start, end in steps:
        y = np.concatenate([y, rng.normal(size=added)])
        dropped = min(dropped, len(y) - 1)
        y = y[dropped:]
        cache.drop(dropped)
        lo = int(start * (len(y) - 1))
        hi = lo + 1 + int(end * (len(y) - lo - 1))
        assert np.array_equal(cache.window(y, lo, hi, k), _rolling_median(y[lo:hi], k))
