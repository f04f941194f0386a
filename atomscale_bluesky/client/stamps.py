"""Chunk start/end stamps (protocol §4): when a chunk's first frame was captured, in reference UTC.

A time is either taken on this computer's clock (``"host"``: an arrival time, a wall-clock
fallback, or a caller's time it declares as host time) and corrected by the measured offset
against the endpoint, or taken by the hardware on its own clock (``"hardware"``: an IOC's EPICS
timestamp), which passes through unchanged: this computer's offset says nothing about the IOC's.
"""

from __future__ import annotations

import time
from typing import Literal

from .clock import Correction, LabClock

__all__ = ["TIME_SOURCES", "TimeSource", "check_time_source", "chunk_stamps", "now_ms", "span_ms"]

TimeSource = Literal["host", "hardware"]
TIME_SOURCES: tuple[TimeSource, ...] = ("host", "hardware")


def check_time_source(source: str) -> TimeSource:
    """``source`` when it is ``"host"`` or ``"hardware"``; ValueError otherwise."""
    if source not in TIME_SOURCES:
        raise ValueError(f"time_source must be 'host' or 'hardware', not {source!r}")
    return "host" if source == "host" else "hardware"


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
    time_source: TimeSource = "host",
) -> tuple[int, int, Correction | None]:
    """``(start, end, correction)`` of a chunk of ``n`` frames.

    Without a capture start the chunk is taken to have just finished capturing, so it started
    one span before it arrived (a host time, corrected). A caller's capture start is corrected
    when it is host time and passed through when it is the hardware's.
    """
    if capture_start_ms is None:
        host_start = arrival_ms - span_ms(n, fps)
        time_source = "host"
    else:
        host_start = capture_start_ms
    if clock is None or time_source == "hardware":
        start, correction = host_start, None
    else:
        start, correction = clock.correct_ms(host_start)
    return start, start + span_ms(n, fps), correction
