"""Live totals of a callback across its runs, safe to update from any thread."""

from __future__ import annotations

import threading
from dataclasses import dataclass, fields

__all__ = ["CallbackCounters", "LockedCounters"]


@dataclass
class CallbackCounters:
    """Live totals across runs; read them any time from ``callback.counters``."""

    runs: int = 0
    runs_left_out: int = 0  # runs not uploaded (start key atomscale=False or run_filter)
    documents: int = 0
    events: int = 0
    frames_queued: int = 0
    frames_pushed: int = 0
    chunks_pushed: int = 0
    points_queued: int = 0
    points_pushed: int = 0
    streams_opened: int = 0
    streams_closed: int = 0
    errors: int = 0
    dropped_overflow: int = 0
    rejected_frames: int = 0
    clipped_frames: int = 0  # frames with values outside their camera's pixel scale (clipped)
    empty_frames: int = 0  # empty image waveforms (no image published yet): not frames
    skipped_points: int = 0
    duplicate_events: int = 0
    duplicate_starts: int = 0  # start documents repeated for the running run (ignored)
    orphan_events: int = 0
    external_failed: int = 0
    queue_bytes: int = 0
    queue_items: int = 0

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


class LockedCounters:
    """Counters shared by the RunEngine/monitor threads and the worker, updated under a lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values = CallbackCounters()

    def add(self, **amounts: int) -> None:
        with self._lock:
            for name, amount in amounts.items():
                setattr(self._values, name, getattr(self._values, name) + amount)

    def set(self, **values: int) -> None:
        with self._lock:
            for name, value in values.items():
                setattr(self._values, name, value)

    def snapshot(self) -> CallbackCounters:
        with self._lock:
            return CallbackCounters(**self._values.as_dict())
