"""Monolayers grown since the growth shutter last opened: the growth rate integrated over time.

The shutter states come from the time-series channels whose names match the server's shutter
pattern (a value >= 0.5 is open; growth runs while any of them is open). The rate history is
piecewise constant: each new estimate replaces the rate from the start of its fitting window on
(it saw those oscillations), and the first estimate also stands for the time before it, back to
the opening. Without shutter states the count starts where oscillations were first detected.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["GrowthInterval", "MonolayerCounter", "ShutterHistory"]


@dataclass(frozen=True)
class GrowthInterval:
    """The growth period a time belongs to: when the shutter opened, and closed (None: still open)."""

    opened: float
    closed: float | None


class ShutterHistory:
    """The growth intervals of the union of shutter channels, kept up to date as points arrive.

    Points at or after the latest one (the usual case) extend the intervals where they left off.
    An earlier point replays the history from the last opening before it: every channel is
    closed just before an opening, so the replay starts from a known state. A lookup is a
    binary search."""

    def __init__(self) -> None:
        self._events: list[tuple[float, str, bool]] = []  # sorted: (time, channel, is open)
        self._state: dict[str, bool] = {}
        self._opened: list[float] = []
        self._closed: list[float | None] = []
        self._opened_at: list[int] = []  # index in _events of each opening

    def __len__(self) -> int:
        return len(self._events)

    def extend(self, points: Iterable[tuple[float, str, float | None]]) -> None:
        """Points (time, channel, value) of any channels: a value >= 0.5 is open; points without
        a value or time are ignored."""
        new = sorted(
            (float(ts), name, float(value) >= 0.5)
            for ts, name, value in points
            if value is not None and ts == ts
        )
        if not new:
            return
        start = len(self._events)
        if self._events and new[0] < self._events[-1]:
            position = bisect.bisect_right(self._events, new[0])
            last = bisect.bisect_left(self._opened_at, position) - 1  # last opening before it
            kept, start = (last, self._opened_at[last]) if last >= 0 else (0, 0)
            new = sorted(self._events[start:] + new)
            del self._events[start:], self._opened[kept:], self._closed[kept:]
            del self._opened_at[kept:]
            self._state.clear()
        self._events.extend(new)
        self._advance(start)

    def _advance(self, start: int) -> None:
        for index in range(start, len(self._events)):
            _, name, is_open = event = self._events[index]
            was_open = any(self._state.values())
            self._state[name] = is_open
            now_open = any(self._state.values())
            if now_open and not was_open:
                self._opened.append(event[0])
                self._closed.append(None)
                self._opened_at.append(index)
            elif was_open and not now_open and self._closed and self._closed[-1] is None:
                self._closed[-1] = event[0]

    def interval_at(self, t: float) -> GrowthInterval | None:
        """The last opening at or before ``t``, and its closing."""
        i = bisect.bisect_right(self._opened, t) - 1
        return None if i < 0 else GrowthInterval(self._opened[i], self._closed[i])


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
