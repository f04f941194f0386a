"""When spooled chunks are given up unsent, and the reasons reported for them.

By default a chunk waits in the spool until it is uploaded, however long an outage lasts; only a
retention the user sets (``spool_retention_s``) purges older entries, with the reference's
reason. Silence never deletes anything: a stream a live stream object holds open
is never given up, however long it is idle (a long anneal with the camera stopped). A resumed
stream of a dead process that has been idle for longer than the abandon window (2 h, the
backend's ``stream_error`` rule) is only asked to finalize: its chunks still upload (into a new
part if the backend refuses the stale stream) and then it is ended.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

from .disk_format import Entry
from .stream_state import SpoolStream

__all__ = ["ExpiryRules", "log_discarded"]

log = logging.getLogger(__name__)

DEFAULT_RETENTION_S = math.inf  # no time limit: an outage delays data, never loses it
ABANDON_AFTER_S = 2 * 3600.0


def hours(seconds: float) -> str:
    """Hours as Rust prints an f64: ``24`` rather than ``24.0``."""
    value = seconds / 3600.0
    return str(int(value)) if value == int(value) else repr(value)


@dataclass(frozen=True)
class ExpiryRules:
    """The retention of entries and the silence after which a resumed stream is finalized."""

    retention_s: float = DEFAULT_RETENTION_S
    abandon_after_s: float = ABANDON_AFTER_S

    def expired(self, entry: Entry, now_ms: int) -> bool:
        """The entry has waited longer than the retention."""
        return now_ms - entry.spooled_at_ms > self.retention_s * 1000

    def orphaned(self, stream: SpoolStream, now_ms: int) -> bool:
        """A resumed stream nobody holds, silent for longer than the abandon window."""
        return (
            not stream.live
            and stream.resumed
            and not stream.finalize_requested
            and stream.closed is None
            and now_ms - stream.last_upload_ms > self.abandon_after_s * 1000
        )

    @property
    def retention_reason(self) -> str:
        return f"not uploaded within the {hours(self.retention_s)} h retention limit"


def log_discarded(entry: Entry, reason: str) -> None:
    log.warning("discarded chunk %d of stream %s: %s", entry.chunk_idx, entry.local_id, reason)
