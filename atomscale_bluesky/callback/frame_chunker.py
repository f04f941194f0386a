"""Turn one camera's frames into uint8 (N, H, W) chunks stamped with hardware time.

Every time is a frame's hardware time (:mod:`~atomscale_bluesky.callback.frame_times`). A chunk's
capture start is its first frame's time and the protocol stamps its end as start + N/fps, so a
chunk is cut at a counter reset, and at a time gap of more than ``cut_periods`` frame periods that
leaves the frames after it more than that far from the chunk's even spacing (a paused acquisition;
a busy IOC's burst catching up keeps the chunk whole). Every frame is kept: a cut chunk is simply
shorter than chunk_size. Frames are kept in time order within what is not yet flushed; duplicates
(same timestamp) and frames older than the last flushed one are dropped and counted. Missing
frames are counted by :class:`~atomscale_bluesky.callback.frame_gaps.FrameSequence`.
"""

from __future__ import annotations

import bisect
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from atomscale_bluesky.callback.frame_gaps import FrameSequence
from atomscale_bluesky.client.frame_compressor import CompressedFrame

__all__ = [
    "CameraChunker",
    "Chunk",
    "ChunkStats",
    "chunk_size_for",
]


def chunk_size_for(fps: float, chunk_seconds: float) -> int:
    """Frames per chunk: ``ceil(chunk_seconds * fps)`` and never below the protocol's ``ceil(2*fps)``."""
    return max(1, math.ceil(chunk_seconds * fps), math.ceil(2 * fps))


@dataclass
class Chunk:
    """One chunk ready to push: frames in capture order and the first frame's time (ms UTC).

    ``frames`` are the (H, W) uint8 frames as they arrived (views, never stacked into a copy: the
    client encodes a list of frames directly); ``compressed`` their compressions started on
    arrival (None for a frame added before the chunker had a compressor).
    """

    frames: list[np.ndarray]
    capture_start_ms: int
    first_ts: float
    last_ts: float
    host_timed: bool = False  # the first frame's time is the callback host's clock, not hardware
    compressed: list[CompressedFrame | None] | None = None


@dataclass
class ChunkStats:
    """What happened to one camera's frames, for the run summary."""

    frames_in: int = 0
    frames_chunked: int = 0
    chunks: int = 0
    duplicates: int = 0
    late: int = 0
    missing: int = 0  # frames absent from the camera's sequence
    gap_events: int = 0
    counter_resets: int = 0
    missing_timestamps: int = 0
    stale: int = 0  # a monitor's pre-subscription value (counted by the camera's timer)


@dataclass
class _Pending:
    ts: float
    order: int
    counter: int | None
    frame: np.ndarray = field(repr=False)
    host_timed: bool = False
    compressed: CompressedFrame | None = field(default=None, repr=False)


def _pending_key(item: _Pending) -> tuple[float, int]:
    return (item.ts, item.order)


class CameraChunker:
    """Per camera (and frame shape): order, de-duplicate and chunk frames; measure fps if unknown."""

    def __init__(
        self,
        *,
        fps: float | None,
        chunk_seconds: float = 2.0,
        fps_source: str = "configured",
        measure_frames: int = 10,
        pause_s: float = 2.0,
        cut_periods: float = 4.0,
        sequence: FrameSequence | None = None,
    ) -> None:
        self.chunk_seconds = chunk_seconds
        self.cut_periods = cut_periods
        # gap accounting: shared by a camera's chunkers (one per frame shape), else our own
        self._owns_sequence = sequence is None
        self.sequence = sequence or FrameSequence(pause_s=pause_s)
        self.fps: float | None = fps if fps and fps > 0 else None
        self.fps_source = fps_source if self.fps else "measured"
        self.measure_frames = max(2, measure_frames)
        self.chunk_size: int | None = chunk_size_for(self.fps, chunk_seconds) if self.fps else None
        self.stats = ChunkStats()
        self._pending: list[_Pending] = []
        self._pending_ts: set[float] = set()
        self._order = 0
        self._last_flushed_ts: float | None = None
        self._recent_flushed: set[float] = set()
        self._clean = 0  # leading pending frames known to hold no cut
        self.compress: Callable[[np.ndarray], CompressedFrame] | None = None
        """Starts a kept frame's compression as it arrives (the stream's), once there is one."""

    @property
    def pending(self) -> int:
        return len(self._pending)

    def add(
        self,
        stack: np.ndarray,
        timestamps: Sequence[float | None],
        counters: Sequence[int | None] | None = None,
        *,
        continuous: bool = False,
        host_timed: bool = False,
    ) -> list[Chunk]:
        """Add (N, H, W) uint8 frames with one timestamp each (or one for the whole stack);
        ``host_timed``: the times are the callback host's clock, not the hardware's."""
        stamps = self._expand(len(stack), timestamps)
        for i, frame in enumerate(stack):
            counter = counters[i] if counters is not None and i < len(counters) else None
            self._add_one(frame, stamps[i], counter, continuous, host_timed)
        if self.fps is None and len(self._pending) >= self.measure_frames:
            self._measure_fps()
        self.sequence.resolve(self.fps)
        return self._full_chunks()

    def finish(self) -> list[Chunk]:
        """Flush everything left (at stop); measure fps from what there is when still unknown."""
        if self.fps is None and self._pending:
            self._measure_fps()
        if self._owns_sequence:
            self.sequence.resolve(self.fps, final=True)
        chunks = self._full_chunks()
        while self._pending:
            chunks.append(self._take(self._cut_index() or len(self._pending)))
        return chunks

    def _expand(self, n: int, timestamps: Sequence[float | None]) -> list[float]:
        stamps = [float(t) if t is not None and _finite(t) else math.nan for t in timestamps]
        if len(stamps) >= n:
            return stamps[:n]
        base = stamps[-1] if stamps else math.nan
        step = 1.0 / self.fps if self.fps else 1e-3
        return stamps + [base + step * (k + 1) for k in range(n - len(stamps))]

    def _add_one(
        self, frame: np.ndarray, ts: float, counter: int | None, continuous: bool, host: bool
    ) -> None:
        self.stats.frames_in += 1
        if math.isnan(ts):
            self.stats.missing_timestamps += 1
            ts, host = time.time(), True  # last resort, counted: no hardware timestamp
        if ts in self._pending_ts or ts in self._recent_flushed:
            self.stats.duplicates += 1
            return
        if self._last_flushed_ts is not None and ts < self._last_flushed_ts:
            self.stats.late += 1
            return
        self.sequence.add(ts, counter, self.stats, continuous=continuous)
        item = _Pending(ts, self._order, counter, frame, host)
        if self.compress is not None:
            try:
                item.compressed = self.compress(frame)
            except Exception:  # noqa: BLE001 - the frame is then compressed with its chunk
                item.compressed = None
        self._order += 1
        self._pending_ts.add(ts)
        if not self._pending or ts >= self._pending[-1].ts:
            self._pending.append(item)
        else:  # out of hardware-time order: insert in place, re-check for cuts around it
            at = bisect.bisect(self._pending, _pending_key(item), key=_pending_key)
            self._pending.insert(at, item)
            self._clean = min(self._clean, max(at - 1, 0))

    def _measure_fps(self) -> None:
        stamps = [p.ts for p in self._pending]
        diffs = np.diff(np.asarray(stamps, dtype=float))
        diffs = diffs[diffs > 0]
        # rounded: float noise in timestamps must not turn 25 fps into ceil(50.0000001) = 51 frames
        fps = round(1.0 / float(np.median(diffs)), 3) if diffs.size else 1.0
        self.fps = fps
        self.fps_source = "measured"
        self.chunk_size = chunk_size_for(fps, self.chunk_seconds)

    def _full_chunks(self) -> list[Chunk]:
        chunks: list[Chunk] = []
        while self.chunk_size is not None and self._pending:
            cut = self._cut_index()
            if cut is not None:
                chunks.append(self._take(cut))
            elif len(self._pending) >= self.chunk_size:
                chunks.append(self._take(self.chunk_size))
            else:
                break
        return chunks

    def _cut_index(self) -> int | None:
        """Index of the first pending frame after a time gap or counter reset, within a chunk."""
        if self.fps is None or self.chunk_size is None:
            return None
        pending = self._pending
        limit = self.cut_periods / self.fps
        end = min(len(pending), self.chunk_size + 1)
        for i in range(max(self._clean, 1), end):
            before, after = pending[i - 1], pending[i]
            reset = (
                before.counter is not None
                and after.counter is not None
                and after.counter < before.counter
            )
            if reset or (after.ts - before.ts > limit and self._off_grid(i, limit)):
                self._clean = i
                return i
        self._clean = max(self._clean, end)
        return None

    def _off_grid(self, i: int, limit: float) -> bool:
        """Frame i is more than ``limit`` from where the chunk's even spacing would stamp it.

        A gap that only makes up for frames delivered early (a burst from a busy IOC) keeps the
        chunk whole; a pause puts the frames after it off the grid and cuts it."""
        assert self.fps is not None
        return abs(self._pending[i].ts - (self._pending[0].ts + i / self.fps)) > limit

    def _take(self, n: int) -> Chunk:
        taken, self._pending = self._pending[:n], self._pending[n:]
        self._clean = max(self._clean - n, 0)
        for item in taken:
            self._pending_ts.discard(item.ts)
        self._last_flushed_ts = taken[-1].ts
        self._recent_flushed = {p.ts for p in taken}
        self.stats.frames_chunked += len(taken)
        self.stats.chunks += 1
        return Chunk(
            frames=[p.frame for p in taken],
            capture_start_ms=int(round(taken[0].ts * 1000.0)),
            first_ts=taken[0].ts,
            last_ts=taken[-1].ts,
            host_timed=taken[0].host_timed,
            compressed=[p.compressed for p in taken],
        )


def _finite(value: Any) -> bool:
    try:
        return value is not None and math.isfinite(float(value))
    except (TypeError, ValueError):
        return False
