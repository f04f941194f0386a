"""Chunk start/end stamps (protocol §4): when a chunk's first frame was captured, in reference UTC."""

from __future__ import annotations

import time

from .clock import Correction, LabClock

__all__ = ["chunk_stamps", "now_ms", "span_ms"]


def now_ms() -> int:
    """Host wall-clock time in whole ms (the arrival time of a push)."""
    return time.time_ns() // 1_000_000


def span_ms(n: int, fps: float) -> int:
    """``trunc(n / fps * 1000)``: the time ``n`` frames cover, truncated toward zero."""
    return int(n / fps * 1000.0)


def chunk_stamps(
    n: int,
    fps: float,
    arrival_ms: int,
    capture_start_ms: int | None,
    clock: LabClock | None,
) -> tuple[int, int, Correction | None]:
    """``(start, end, correction)`` of a chunk of ``n`` frames.

    Without a capture start the chunk is taken to have just finished capturing, so it started
    one span before it arrived. A caller's capture start is host-clock time and is corrected too.
    """
    host_start = capture_start_ms if capture_start_ms is not None else arrival_ms - span_ms(n, fps)
    if clock is None:
        start, correction = host_start, None
    else:
        start, correction = clock.correct_ms(host_start)
    return start, start + span_ms(n, fps), correction
