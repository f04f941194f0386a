"""Helpers shared by the simulation tests."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest


def _power(t: np.ndarray, x: np.ndarray, freqs: np.ndarray) -> np.ndarray:
    """DFT power of the (non-uniformly sampled) ``x(t)`` at ``freqs``."""
    t = np.asarray(t, float)
    x = np.asarray(x, float) - np.mean(x)
    return np.abs(np.exp(-2j * np.pi * np.outer(freqs, t - t[0])) @ x) ** 2


def _dominant_frequency(t: np.ndarray, x: np.ndarray, fmin: float, fmax: float) -> float:
    """Peak of the DFT power of ``x(t)`` on a fine grid in [fmin, fmax]."""
    freqs = np.linspace(fmin, fmax, 4000)
    return float(freqs[int(np.argmax(_power(t, x, freqs)))])


def _fundamental_frequency(
    t: np.ndarray, x: np.ndarray, fmin: float, fmax: float, harmonics: int = 4
) -> float:
    """The f in [fmin, fmax] whose first ``harmonics`` multiples hold the most DFT power: the
    repetition rate of a pulse train, whose harmonics are about as strong as its fundamental
    (a plain power peak may then fall on any of them)."""
    freqs = np.linspace(fmin, fmax, 4000)
    total = sum(_power(t, x, k * freqs) for k in range(1, harmonics + 1))
    return float(freqs[int(np.argmax(total))])


@pytest.fixture
def dominant_frequency() -> Callable[[np.ndarray, np.ndarray, float, float], float]:
    return _dominant_frequency


@pytest.fixture
def fundamental_frequency() -> Callable[[np.ndarray, np.ndarray, float, float], float]:
    return _fundamental_frequency
