"""Every frame's hardware time, and a camera's frame rate measured from hardware times.

A frame key's reading carries either one hardware time per frame (per-frame times from a file's
NDAttributes) or one time for all the frames it delivers (a multi-image acquisition, an HDF5
datum of ``frame_per_point`` frames): that time is its *last* frame's, as areaDetector stamps an
array with the time of the newest frame. A camera's readings wait in a :class:`FrameTimer` until
its cadence is measured; then the earlier frames of a multi-frame reading are placed evenly
between the previous reading's time and its own (the camera ran on between them, so the two
hardware times bound its frames; its frame counter, when known, says how many it took), or one
frame period apart when there is no previous time or a pause came before it (more than
:data:`PAUSE_PERIODS` periods per frame). A declared rate (AcquirePeriod, metadata) that
disagrees with the measured cadence by more than :data:`FPS_TOLERANCE` loses.

A monitor's first reading is its value from before the subscription; it is *stale* (left out)
only when the camera's own clock or counter says so: a pause of more than ``pause_periods``
frame periods before the next reading, or a counter that does not step to the next reading's.
Nothing here compares the IOC's clock with a host's.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "FPS_TOLERANCE",
    "Cadence",
    "FrameTimer",
    "TimedFrames",
    "TimerStats",
    "decide_cadence",
    "frame_spacing",
    "measure_fps",
]

FPS_TOLERANCE = 0.10  # a declared fps further than this from the measured one loses
PAUSE_PERIODS = 1.5  # a spacing beyond this many frame periods is a pause, not the cadence


@dataclass(frozen=True)
class Cadence:
    """A camera's frame rate and where it came from, with the declared rate it was checked with."""

    fps: float
    source: str  # "measured", "AcquirePeriod", "metadata", "constructor" or "single frame"
    measured: float | None = None
    declared: float | None = None
    declared_source: str | None = None

    @property
    def overruled(self) -> bool:
        """A declared rate lost against the measured cadence."""
        return self.declared is not None and self.source == "measured"


@dataclass(frozen=True)
class TimedFrames:
    """One reading's frames, each with its hardware time."""

    stack: np.ndarray  # uint8 (N, H, W)
    stamps: list[float]
    counters: list[int | None] | None
    continuous: bool
    host_timed: bool = False  # stamped on the callback's host (no hardware time)


@dataclass
class TimerStats:
    """What the timer did to a camera's frames, for the run summary."""

    stale: int = 0  # a monitor's pre-subscription value, left out
    wall_clock: int = 0  # frames without any hardware time: stamped on arrival (callback host)


@dataclass
class _Reading:
    stack: np.ndarray
    stamps: list[float]  # one per frame, or one (the last frame's) for the whole stack
    counters: list[int | None] | None
    continuous: bool
    initial: bool
    host_timed: bool = False

    @property
    def per_frame(self) -> bool:
        return len(self.stamps) == len(self.stack)

    @property
    def last(self) -> float:
        return self.stamps[-1]


def _anchors(readings: Sequence[_Reading]) -> list[tuple[float, int]]:
    """(hardware time, frames since the previous time) of every known time, in order."""
    out: list[tuple[float, int]] = []
    for r in readings:
        if r.per_frame:
            out.extend((t, 1) for t in r.stamps)
        else:
            out.append((r.last, len(r.stack)))
    return out


def measure_fps(anchors: Sequence[tuple[float, int]]) -> float | None:
    """Frames per second over the intervals that are not pauses; None with fewer than two times.

    Each interval between two known times covers the frames delivered with the later one. An
    interval more than 1.5 times the median frame period is a pause (a stopped camera, a motor
    move) and does not count; the rate is the kept frames over the kept time.
    """
    ordered = sorted(anchors)
    intervals = [
        (b[0] - a[0], b[1]) for a, b in zip(ordered, ordered[1:], strict=False) if b[0] > a[0]
    ]
    if not intervals:
        return None
    median = statistics.median(dt / n for dt, n in intervals)
    kept = [(dt, n) for dt, n in intervals if dt / n <= PAUSE_PERIODS * median]
    seconds = sum(dt for dt, _ in kept)
    frames = sum(n for _, n in kept)
    return round(frames / seconds, 3) if seconds > 0 else None


def decide_cadence(
    measured: float | None, declared: float | None, declared_source: str | None
) -> Cadence:
    """The measured rate, unless a declared one agrees with it within :data:`FPS_TOLERANCE`."""
    if declared and (measured is None or abs(declared - measured) <= FPS_TOLERANCE * measured):
        return Cadence(declared, declared_source or "declared", measured, declared, declared_source)
    if measured is None:
        return Cadence(1.0, "single frame")
    return Cadence(measured, "measured", measured, declared, declared_source if declared else None)


@dataclass
class FrameTimer:
    """One camera's readings held until its cadence is known, then released with frame times.

    ``declared``/``declared_source`` are the camera's declared rate; ``fixed`` is the user's
    constructor fps, which is used as given. The cadence is measured once at least
    ``measure_frames`` frames (or ``measure_s`` seconds) in ``measure_times`` known times wait.
    """

    declared: float | None = None
    declared_source: str | None = None
    fixed: float | None = None
    measure_frames: int = 20
    measure_s: float = 5.0
    measure_times: int = 3
    pause_periods: float = 4.0
    cadence: Cadence | None = None
    stats: TimerStats = field(default_factory=TimerStats)
    _held: list[_Reading] = field(default_factory=list)
    _last_time: float | None = None  # the newest released frame time
    _last_counter: int | None = None  # the camera's counter of that frame, when known

    def add(
        self,
        stack: np.ndarray,
        stamps: Sequence[float],
        counters: list[int | None] | None,
        *,
        continuous: bool,
        initial: bool = False,
        host_timed: bool = False,
    ) -> list[TimedFrames]:
        """Hold one reading (``stamps``: one per frame, or the last frame's); release when timed.

        ``counters`` likewise: one per frame, or the newest frame's (kept on that frame, so the
        camera's sequence sees the frames before it as delivered without their own value).
        """
        if counters is not None and len(counters) == 1 and len(stack) > 1:
            newest: list[int | None] = [None] * (len(stack) - 1)
            counters = [*newest, counters[0]]
        times = [float(t) for t in stamps][: len(stack)] or [math.nan]
        if len(times) != len(stack):
            times = times[-1:]
        if any(math.isnan(t) for t in times):
            host_timed = True
            self.stats.wall_clock += len(stack)
            times = [time.time()] if len(times) == 1 else _fill_nan(times)
        self._held.append(_Reading(stack, times, counters, continuous, initial, host_timed))
        if self.cadence is None and not self._ready():
            return []
        return self._release()

    def finish(self) -> list[TimedFrames]:
        """Release everything held; the cadence is measured from what there is."""
        return self._release() if self._held else []

    def _ready(self) -> bool:
        anchors = _anchors(self._held)
        if len(anchors) < self.measure_times:
            return False
        frames = sum(len(r.stack) for r in self._held)
        span = max(t for t, _ in anchors) - min(t for t, _ in anchors)
        return frames >= self.measure_frames or span >= self.measure_s

    def _release(self) -> list[TimedFrames]:
        if self.cadence is None:
            self._drop_stale_initial()
            measured = measure_fps(_anchors(self._held))
            if self.fixed:
                self.cadence = Cadence(
                    self.fixed, "constructor", measured, self.declared, self.declared_source
                )
            else:
                self.cadence = decide_cadence(measured, self.declared, self.declared_source)
        held, self._held = self._held, []
        return [self._timed(r) for r in held]

    def _drop_stale_initial(self) -> None:
        """Leave out a monitor's first reading when the camera paused or restarted after it."""
        if len(self._held) < 2 or not self._held[0].initial:
            return
        first, rest = self._held[0], self._held[1:]
        nxt = rest[0]
        fps = measure_fps(_anchors(rest))
        gap = nxt.stamps[0] - first.last
        if fps is not None and not nxt.per_frame:
            gap -= (len(nxt.stack) - 1) / fps  # the next reading's time is its newest frame's
        paused = fps is not None and gap > self.pause_periods / fps
        c_first = first.counters[-1] if first.counters else None
        c_next = nxt.counters[0] if nxt.counters else None
        restarted = c_first is not None and c_next is not None and c_next != c_first + 1
        if paused or restarted or gap < 0:
            self.stats.stale += len(first.stack)
            self._held = rest

    def _timed(self, r: _Reading) -> TimedFrames:
        """Per-frame times: as given, or evenly spaced ending at the reading's time."""
        assert self.cadence is not None
        n = len(r.stack)
        counter = r.counters[-1] if r.counters else None
        if r.per_frame:
            stamps = list(r.stamps)
        else:
            since = n  # frames since the previous time: the counter says when frames went missing
            if counter is not None and self._last_counter is not None:
                since = max(n, counter - self._last_counter)
            step = frame_spacing(r.last, self._last_time, since, 1.0 / self.cadence.fps)
            stamps = [r.last - (n - 1 - j) * step for j in range(n)]
        if self._last_time is None or stamps[-1] >= self._last_time:
            self._last_counter = counter
        self._last_time = max(stamps[-1], self._last_time or -math.inf)
        return TimedFrames(r.stack, stamps, r.counters, r.continuous, r.host_timed)


def frame_spacing(last: float, previous: float | None, since: int, period: float) -> float:
    """Spacing of the frames of a reading stamped ``last`` (its newest frame's time).

    The ``since`` frames the camera took after the previous reading's time (``previous``) share
    the time between the two stamps evenly; with no previous time, or a pause between them, they
    are one ``period`` apart (closer when the previous time leaves less room, so frames stay in
    order).
    """
    if previous is None or last <= previous:
        return period
    spacing = (last - previous) / since
    return spacing if spacing <= PAUSE_PERIODS * period else period


def _fill_nan(times: list[float]) -> list[float]:
    now = time.time()
    return [now if math.isnan(t) else t for t in times]
