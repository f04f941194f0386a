"""Monolayers grown since the growth shutter last opened: the growth rate integrated over time.

The shutter states come from the time-series channels whose names match the server's shutter
pattern (a value >= 0.5 is open; growth runs while any of them is open). The rate history is
piecewise constant: each new estimate replaces the rate from the start of its fitting window on
(it saw those oscillations), and the first estimate also stands for the time before it, back to
the opening. Without shutter states the count starts where oscillations were first detected.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

__all__ = ["GrowthInterval", "MonolayerCounter", "growth_interval"]


@dataclass(frozen=True)
class GrowthInterval:
    """The growth period a time belongs to: when the shutter opened, and closed (None: still open)."""

    opened: float
    closed: float | None


def growth_interval(
    channels: Mapping[str, tuple[Sequence[float], Sequence[float | None]]], t: float
) -> GrowthInterval | None:
    """The last opening at or before ``t`` of the union of shutter channels, and its closing."""
    events: list[tuple[float, str, bool]] = []
    for name, (times, values) in channels.items():
        for ts, value in zip(times, values, strict=True):
            if value is not None and ts == ts:
                events.append((float(ts), name, float(value) >= 0.5))
    events.sort()
    state: dict[str, bool] = {}
    opened: float | None = None
    closed: float | None = None
    for ts, name, is_open in events:
        was_open = any(state.values())
        state[name] = is_open
        now_open = any(state.values())
        if now_open and not was_open:
            if ts > t:
                break
            opened, closed = ts, None
        elif was_open and not now_open and opened is not None and closed is None:
            closed = ts
    return None if opened is None else GrowthInterval(opened, closed)


class MonolayerCounter:
    """Integrates a piecewise-constant growth rate (monolayers per second) over time.

    Each segment keeps the integral up to its start, so a count costs two binary searches
    however long the rate history is."""

    def __init__(self) -> None:
        self._starts: list[float] = []
        self._rates: list[float] = []
        self._before: list[float] = []  # monolayers from the first start to each start

    def update(self, window_start: float, rate: float) -> None:
        """A new estimate of ``rate`` from a window starting at ``window_start``."""
        cut = bisect.bisect_left(self._starts, window_start)
        del self._starts[cut:], self._rates[cut:], self._before[cut:]
        self._before.append(self._integral(window_start) if self._starts else 0.0)
        self._starts.append(window_start)
        self._rates.append(rate)

    @property
    def first_start(self) -> float | None:
        return self._starts[0] if self._starts else None

    def reset(self) -> None:
        self._starts.clear()
        self._rates.clear()
        self._before.clear()

    def count(self, start: float, end: float) -> float | None:
        """Monolayers grown between ``start`` and ``end`` (None before any estimate)."""
        if not self._rates or end <= start:
            return None if not self._rates else 0.0
        return self._integral(end) - self._integral(start)

    def _integral(self, t: float) -> float:
        """Monolayers from the first segment's start to ``t`` (negative before it)."""
        i = max(bisect.bisect_right(self._starts, t) - 1, 0)
        return self._before[i] + self._rates[i] * (t - self._starts[i])

    def rate_at(self, t: float) -> float:
        i = bisect.bisect_right(self._starts, t) - 1
        return self._rates[max(i, 0)]

    def segments(self) -> Iterable[tuple[float, float]]:
        return zip(self._starts, self._rates, strict=True)
