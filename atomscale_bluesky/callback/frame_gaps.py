"""Count frames missing from a camera's sequence: from its frame counter, else from time gaps.

An areaDetector image and its ``ArrayCounter_RBV``/``UniqueId_RBV`` are written with the same EPICS
timestamp. In a step scan they sit in one event; on monitor streams they are separate streams, so a
:class:`CounterFeed` keeps the counter's readings by timestamp and :class:`FrameSequence` matches
each frame to its counter value. Missing frames are counter jumps (minus frames delivered whose
counter update was not); a counter going backwards is an acquisition restart, counted as a reset.
Only when a continuous stream
has no counter at all are missing frames estimated from gaps between hardware timestamps.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field
from typing import Protocol

__all__ = ["CounterFeed", "FrameSequence", "GapStats", "ts_key"]


def ts_key(ts: float) -> int:
    """A timestamp as integer microseconds: the key that pairs a frame with its counter reading."""
    return int(round(ts * 1e6))


class GapStats(Protocol):
    """Where the counts land (a segment's ``ChunkStats``)."""

    missing: int
    gap_events: int
    counter_resets: int


_PRUNE_MIN = 1024  # readings a feed holds before it first looks for old ones


class CounterFeed:
    """One counter data key's readings on a monitor stream: timestamp -> value.

    A reading is taken by its frame within moments; readings more than ``retain_s`` behind the
    newest are forgotten, so a counter no camera is matched to (a camera's second counter, such
    as UniqueId next to ArrayCounter) costs bounded memory over an hours-long run.
    """

    def __init__(self, retain_s: float = 60.0) -> None:
        self.values: dict[int, int] = {}
        self.horizon = -math.inf  # the latest reading's timestamp (a monitor stream is in order)
        self.retain_s = retain_s
        self._check_at = _PRUNE_MIN

    def add(self, ts: float, value: int) -> None:
        self.values[ts_key(ts)] = value
        self.horizon = max(self.horizon, ts)
        if len(self.values) > self._check_at:  # amortised O(1)
            self.prune(self.horizon - self.retain_s)
            self._check_at = max(_PRUNE_MIN, 2 * len(self.values))

    def take(self, ts: float) -> int | None:
        return self.values.pop(ts_key(ts), None)

    def prune(self, before: float) -> None:
        """Forget readings older than ``before`` (counter values of frames never delivered)."""
        limit = ts_key(before)
        stale = []
        for key in self.values:  # insertion order is (nearly) time order
            if key >= limit:
                break
            stale.append(key)
        for key in stale:
            del self.values[key]


@dataclass(order=True)
class _Seen:
    ts: float
    counter: int | None = field(compare=False)
    stats: GapStats = field(compare=False, repr=False)
    continuous: bool = field(default=True, compare=False)


class FrameSequence:
    """One camera's delivered frames in hardware-time order, checked against its counter."""

    def __init__(
        self,
        *,
        pause_s: float = 2.0,
        max_waiting: int = 4096,
    ) -> None:
        self.pause_s = pause_s  # a longer silence on a counter-less stream is a stopped camera
        self.max_waiting = max_waiting
        self.feed: CounterFeed | None = None
        self._waiting: list[_Seen] = []
        self._last_counter: int | None = None
        self._unmatched = 0  # frames delivered since the last counter value, without their own
        self._last_ts: float | None = None
        self._counted = False  # a frame came with its counter value in its event

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def add(self, ts: float, counter: int | None, stats: GapStats, *, continuous: bool) -> None:
        """Note one delivered frame (its hardware time and, when in its event, its counter)."""
        if counter is None and not continuous and self.feed is None and not self._counted:
            return  # triggered frames without a counter: gaps between them are by design
        self._counted = self._counted or counter is not None
        seen = _Seen(ts, counter, stats, continuous)
        if not self._waiting or ts >= self._waiting[-1].ts:
            self._waiting.append(seen)
        else:
            bisect.insort(self._waiting, seen)

    def resolve(self, fps: float | None, *, final: bool = False) -> None:
        """Account every frame whose counter value is known (or known never to come)."""
        waiting = self._waiting
        done = 0
        while done < len(waiting):
            seen = waiting[done]
            overdue = final or len(waiting) - done > self.max_waiting
            if seen.counter is not None:
                self._step(seen, seen.counter)
            elif not seen.continuous and self.feed is None:
                self._step(seen, None)  # an earlier frame of an event counted by its newest
            elif self.feed is not None:
                value = self.feed.take(seen.ts)
                if value is None and not overdue and seen.ts > self.feed.horizon:
                    break  # its counter reading may still be on the way
                self._step(seen, value)
            elif overdue:
                if fps:
                    self._time_gap(seen, fps)
            else:
                break  # a counter stream may still be linked
            self._last_ts = seen.ts
            done += 1
        if done:
            del waiting[:done]
            if self.feed is not None and self._last_ts is not None and len(self.feed.values) > 64:
                self.feed.prune(self._last_ts)

    def _step(self, seen: _Seen, value: int | None) -> None:
        if value is None:
            if self._last_counter is not None:
                self._unmatched += 1
            return
        last = self._last_counter
        self._last_counter = value
        unmatched, self._unmatched = self._unmatched, 0
        if last is None:
            return
        step = value - last
        if step < 0:
            seen.stats.counter_resets += 1
        elif step > 1:
            gap = step - 1 - unmatched
            if gap > 0:
                seen.stats.missing += gap
                seen.stats.gap_events += 1

    def _time_gap(self, seen: _Seen, fps: float) -> None:
        previous = self._last_ts
        if previous is None:
            return
        periods = (seen.ts - previous) * fps
        if periods > 1.5 and seen.ts - previous <= self.pause_s:
            seen.stats.missing += int(round(periods)) - 1
            seen.stats.gap_events += 1
