"""Duplicate detection for event ``seq_num``s, in memory proportional to the gaps, not the events.

Within a descriptor, event-model numbers events 1, 2, 3, ... so a stream delivered in order needs
only its highest ``seq_num``. :class:`SeqNums` remembers that high mark plus the numbers skipped
below it (events that may still arrive late); a long run of in-order events costs a few bytes.
Skipped numbers within ``window`` of the high mark are always kept; older ones may be forgotten,
and an event that arrives that late counts as a duplicate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

__all__ = ["SeqNums", "Verdict"]

DEFAULT_WINDOW = 4096


class Verdict(Enum):
    """What one ``seq_num`` is relative to those seen before it."""

    NEW = "new"
    LATE = "late"  # new, but below the highest seq_num seen (delivered out of order)
    DUPLICATE = "duplicate"


@dataclass
class SeqNums:
    """The ``seq_num``s seen in one descriptor: the highest, and the skipped ones below it."""

    window: int = DEFAULT_WINDOW
    high: int | None = None
    skipped: set[int] = field(default_factory=set)

    def see(self, seq: int) -> Verdict:
        """Record ``seq`` and say whether it is new, new but late, or a duplicate."""
        if self.high is None or seq > self.high:
            low = seq - self.window if self.high is None else max(self.high + 1, seq - self.window)
            self.skipped.update(range(max(low, 1), seq))
            self.high = seq
            self._forget_far()
            return Verdict.NEW
        if seq in self.skipped:
            self.skipped.discard(seq)
            return Verdict.LATE
        return Verdict.DUPLICATE

    def _forget_far(self) -> None:
        """Drop skipped numbers more than ``window`` below the high mark (amortised O(1))."""
        if self.high is not None and len(self.skipped) > 2 * self.window:
            floor = self.high - self.window
            self.skipped = {s for s in self.skipped if s > floor}
