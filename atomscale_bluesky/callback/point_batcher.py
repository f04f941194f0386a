"""Batch scalar readings per channel into time-series chunks (hardware timestamps, sorted).

Readings are kept as the page columns they came in and converted to floats a batch at a time
(one numpy conversion per channel instead of a few Python calls per reading), so a run with
many channels costs the worker little per event.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from atomscale_bluesky.callback.routing import ChannelKey
from atomscale_bluesky.callback.values import as_float, scalar_value

__all__ = ["ChannelStats", "PointBatch", "PointBatcher"]


@dataclass
class ChannelStats:
    """Per-channel point counts for the summary."""

    key: str = ""  # the data key the channel was first read from
    points: int = 0
    non_finite: int = 0
    units: str | None = None
    enum_strs: tuple[str, ...] | None = None


@dataclass
class _Column:
    """One channel's readings since the last batch, as they came."""

    stamps: list[Any] = field(default_factory=list)
    values: list[Any] = field(default_factory=list)


@dataclass
class PointBatch:
    """What :meth:`PointBatcher.take` hands over: the ``push_multi`` payload and what was left out."""

    channels: dict[str, tuple[np.ndarray, np.ndarray, str | None]]
    points: int
    non_finite: dict[str, int]  # channel -> readings refused (non-finite value or timestamp)


def _floats(raw: list[Any]) -> np.ndarray:
    """Timestamps as float64; what is not a number becomes NaN."""
    try:
        return np.asarray(raw, dtype=np.float64)
    except (TypeError, ValueError):
        return np.array([as_float(v) for v in raw], dtype=np.float64)


def _scalars(raw: list[Any], enum_strs: tuple[str, ...] | None) -> np.ndarray:
    """Channel values as float64 (bools 0/1, enum strings by index, NaN when not numeric)."""
    try:
        array = np.asarray(raw)
    except (TypeError, ValueError):  # ragged: a waveform among the readings
        array = np.zeros(0, dtype=object)
    if array.ndim == 1 and len(array) == len(raw) and array.dtype.kind in "biuf":
        return array.astype(np.float64, copy=False)
    return np.array([scalar_value(v, enum_strs) for v in raw], dtype=np.float64)


class PointBatcher:
    """Batches scalar points per channel; ``take`` hands over a ``push_multi`` payload when due.

    Due when one channel holds ``points_per_chunk`` readings (a full time-series chunk of that
    channel) or the oldest is ``max_age_s`` old: with many channels one upload then carries
    every channel's full chunk instead of a few points of each. Non-finite readings are counted
    and left out when the batch is taken.
    """

    def __init__(self, *, points_per_chunk: int = 100, max_age_s: float = 1.0) -> None:
        self.points_per_chunk = points_per_chunk
        self.max_age_s = max_age_s
        self.channels: dict[str, ChannelStats] = {}
        self._batch: dict[str, _Column] = {}
        self._fullest = 0  # readings of the channel holding the most
        self._since: float | None = None

    def add_page(
        self,
        channels: Mapping[str, ChannelKey],
        data: Mapping[str, Sequence[Any]],
        timestamps: Mapping[str, Sequence[Any]],
        n_rows: int,
    ) -> None:
        """Queue the channel columns of ``n_rows`` event rows (data keys -> channels).

        A missing or short timestamp column counts as NaN (refused when the batch is taken).
        """
        for key, channel in channels.items():
            values = data.get(key)
            if values is None or len(values) == 0:  # a column may be a numpy array
                continue
            column = self._batch.get(channel.name)
            if column is None:
                column = self._column(key, channel)
            n = min(len(values), n_rows)
            column.values.extend(values if len(values) == n else values[:n])
            stamps = timestamps.get(key)
            if stamps is None:
                stamps = ()
            if len(stamps) >= n:
                column.stamps.extend(stamps if len(stamps) == n else stamps[:n])
            else:
                column.stamps.extend(stamps)
                column.stamps.extend([math.nan] * (n - len(stamps)))
            if len(column.values) > self._fullest:
                self._fullest = len(column.values)
        if self._since is None and self._batch:
            self._since = time.monotonic()

    def _column(self, key: str, channel: ChannelKey) -> _Column:
        if channel.name not in self.channels:
            self.channels[channel.name] = ChannelStats(
                key=key, units=channel.units, enum_strs=channel.enum_strs
            )
        column = self._batch[channel.name] = _Column()
        return column

    def due(self) -> bool:
        if not self._batch:
            return False
        if self._fullest >= self.points_per_chunk:
            return True
        return self._since is not None and time.monotonic() - self._since >= self.max_age_s

    def take(self) -> PointBatch:
        """Everything batched: each channel's finite points sorted by timestamp."""
        out: dict[str, tuple[np.ndarray, np.ndarray, str | None]] = {}
        refused: dict[str, int] = {}
        total = 0
        for channel, column in self._batch.items():
            stats = self.channels[channel]
            stamps = _floats(column.stamps)
            values = _scalars(column.values, stats.enum_strs)
            finite = np.isfinite(stamps) & np.isfinite(values)
            kept = int(np.count_nonzero(finite))
            if kept < len(finite):
                refused[channel] = len(finite) - kept
                stats.non_finite += len(finite) - kept
                stamps, values = stamps[finite], values[finite]
            stats.points += kept
            if not kept:
                continue
            order = np.argsort(stamps, kind="stable")
            out[channel] = (stamps[order], values[order], stats.units)
            total += kept
        self._batch = {}
        self._fullest = 0
        self._since = None
        return PointBatch(out, total, refused)
