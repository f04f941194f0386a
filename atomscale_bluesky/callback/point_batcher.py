"""Batch scalar readings per channel into time-series chunks (hardware timestamps, sorted)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

__all__ = ["ChannelStats", "PointBatcher"]


@dataclass
class ChannelStats:
    """Per-channel point counts for the summary."""

    points: int = 0
    non_finite: int = 0
    units: str | None = None


class PointBatcher:
    """Batches scalar points per channel; ``take`` hands over a ``push_multi`` payload when due.

    Due when one channel holds ``points_per_chunk`` points (a full time-series chunk of that
    channel) or the oldest point is ``max_age_s`` old: with many channels one upload then carries
    every channel's full chunk instead of a few points of each.
    """

    def __init__(self, *, points_per_chunk: int = 100, max_age_s: float = 1.0) -> None:
        self.points_per_chunk = points_per_chunk
        self.max_age_s = max_age_s
        self.channels: dict[str, ChannelStats] = {}
        self._batch: dict[str, tuple[list[float], list[float]]] = {}
        self._size = 0
        self._fullest = 0  # points of the channel holding the most
        self._since: float | None = None

    def add(self, channel: str, ts: float, value: float, units: str | None) -> bool:
        """Queue one point; a non-finite value or timestamp is counted and refused."""
        stats = self.channels.get(channel)
        if stats is None:
            stats = self.channels[channel] = ChannelStats(units=units)
        if not (math.isfinite(value) and math.isfinite(ts)):
            stats.non_finite += 1
            return False
        stamps, values = self._batch.setdefault(channel, ([], []))
        stamps.append(ts)
        values.append(value)
        stats.points += 1
        self._size += 1
        if len(stamps) > self._fullest:
            self._fullest = len(stamps)
        if self._since is None:
            self._since = time.monotonic()
        return True

    def due(self) -> bool:
        if not self._size:
            return False
        if self._fullest >= self.points_per_chunk:
            return True
        return self._since is not None and time.monotonic() - self._since >= self.max_age_s

    def take(self) -> dict[str, tuple[list[float], list[float], str | None]]:
        """Everything batched, each channel sorted by timestamp."""
        out: dict[str, tuple[list[float], list[float], str | None]] = {}
        for channel, (stamps, values) in self._batch.items():
            if not stamps:
                continue
            order = sorted(range(len(stamps)), key=stamps.__getitem__)
            out[channel] = (
                [stamps[i] for i in order],
                [values[i] for i in order],
                self.channels[channel].units,
            )
        self._batch = {}
        self._size = 0
        self._fullest = 0
        self._since = None
        return out
