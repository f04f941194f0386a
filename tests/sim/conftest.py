"""Helpers shared by the simulation tests."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest


def _dominant_frequency(t: np.ndarray, x: np.ndarray, fmin: float, fmax: float) -> float:
    """Peak of the (non-uniformly sampled) DFT power of ``x(t)`` on a fine grid in [fmin, fmax]."""
    t = np.asarray(t, float)
    x = np.asarray(x, float)
    freqs = np.linspace(fmin, fmax, 4000)
    x = x - x.mean()
    power = np.abs(np.exp(-2j * np.pi * np.outer(freqs, t - t[0])) @ x) ** 2
    return float(freqs[int(np.argmax(power))])


@pytest.fixture
def dominant_frequency() -> Callable[[np.ndarray, np.ndarray, float, float], float]:
    return _dominant_frequency
