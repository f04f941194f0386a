"""When spooled chunks are given up unsent, and the reasons reported for them.

An entry older than the retention (default 24 h) is purged. A RHEED stream with no confirmed
upload for 2 h since it was created or last uploaded is abandoned: the backend has closed it as
``stream_error``, so its entries are purged and the stream is closed. Closing a stream (finalize
or abandonment) purges what it still holds.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from .disk_format import Entry
from .stream_state import SpoolStream

__all__ = ["ExpiryRules", "closing_reason", "log_abandoned", "log_discarded"]

log = logging.getLogger("atomscale_bluesky.client.spool")

DEFAULT_RETENTION_S = 24 * 3600.0
ABANDON_AFTER_S = 2 * 3600.0


def hours(seconds: float) -> str:
    """Hours as Rust prints an f64: ``24`` rather than ``24.0``."""
    value = seconds / 3600.0
    return str(int(value)) if value == int(value) else repr(value)


@dataclass(frozen=True)
class ExpiryRules:
    """The retention of entries and the silence after which a RHEED stream is abandoned."""

    retention_s: float = DEFAULT_RETENTION_S
    abandon_after_s: float = ABANDON_AFTER_S

    def expired(self, entry: Entry, now_ms: int) -> bool:
        """The entry has waited longer than the retention."""
        return now_ms - entry.spooled_at_ms > self.retention_s * 1000

    def abandoned(self, stream: SpoolStream, now_ms: int) -> bool:
        """The backend has closed this RHEED stream: no confirmed upload for too long."""
        return (
            stream.kind == "rheed" and now_ms - stream.last_upload_ms > self.abandon_after_s * 1000
        )

    @property
    def retention_reason(self) -> str:
        return f"not uploaded within the {hours(self.retention_s)} h retention limit"


def closing_reason(closed: str) -> str:
    """Why the entries a stream still holds when it closes are purged."""
    return f"not uploaded before the stream was {closed}"


def log_abandoned(data_id: str, rules: ExpiryRules, pending: int) -> None:
    log.warning(
        "stream %s has had no confirmed upload for over %s h, so the backend has closed it; "
        "discarding its %d spooled chunk(s)",
        data_id,
        hours(rules.abandon_after_s),
        pending,
    )


def log_discarded(entry: Entry, reason: str) -> None:
    log.info("discarded chunk %d of stream %s: %s", entry.chunk_idx, entry.data_id, reason)
