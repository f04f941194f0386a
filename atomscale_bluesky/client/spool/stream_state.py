"""What the spool knows of each stream and of all of them: chunk outcomes, lost chunks, lock."""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..report import StreamReport
from .disk_format import StreamMarker

__all__ = ["Fate", "SpoolStream", "Totals"]

MAX_LISTED_LOSSES = 1000
MARKER_REFRESH_MS = 60_000

Fate = Literal["uploaded", "failed", "purged"]
"""How a spooled entry leaves the spool."""


@dataclass
class Totals:
    """Chunk outcomes over every stream this spool has seen, closed ones included."""

    spooled: int = 0
    uploaded: int = 0
    dropped: int = 0
    failed: int = 0
    purged: int = 0

    def add(self, fate: Fate) -> None:
        setattr(self, fate, getattr(self, fate) + 1)

    def as_status(self) -> dict[str, int]:
        """The ``chunks_*`` keys of ``spool_status()``."""
        return {f"chunks_{name}": value for name, value in asdict(self).items()}


@dataclass
class SpoolStream:
    """One stream's folder, lock, marker times, counters and lost chunks."""

    data_id: str
    kind: str
    dir: Path
    lock_fd: int | None
    created_at_ms: int
    last_upload_ms: int
    marker_written_ms: int
    info: dict[str, Any] = field(default_factory=dict)
    resumed: bool = False
    closed: str | None = None
    spooled: int = 0
    uploaded: int = 0
    dropped: int = 0
    failed: int = 0
    purged: int = 0
    pending: int = 0
    spooled_bytes: int = 0
    uploaded_bytes: int = 0
    losses: list[tuple[int, str]] = field(default_factory=list)
    cancel: threading.Event = field(default_factory=threading.Event)

    def lose(self, chunk_idx: int, reason: str) -> None:
        """Note why a chunk will not be uploaded (the first ``MAX_LISTED_LOSSES``)."""
        if len(self.losses) < MAX_LISTED_LOSSES:
            self.losses.append((chunk_idx, reason))

    def count_spooled(self, nbytes: int) -> None:
        self.spooled += 1
        self.pending += 1
        self.spooled_bytes += nbytes

    def count_dropped(self, chunk_idx: int, reason: str) -> None:
        self.dropped += 1
        self.lose(chunk_idx, f"dropped: {reason}")

    def count_uploaded(self, nbytes: int, now_ms: int) -> None:
        self.uploaded += 1
        self.pending = max(self.pending - 1, 0)
        self.uploaded_bytes += nbytes
        self.last_upload_ms = now_ms

    def count_lost(self, fate: Literal["failed", "purged"], chunk_idx: int, reason: str) -> None:
        setattr(self, fate, getattr(self, fate) + 1)
        self.pending = max(self.pending - 1, 0)
        self.lose(chunk_idx, reason)

    def marker(self, endpoint: str, finalized: bool = False) -> StreamMarker:
        return StreamMarker(
            data_id=self.data_id,
            endpoint=endpoint,
            kind=self.kind,
            created_at_ms=self.created_at_ms,
            last_upload_ms=self.last_upload_ms,
            finalized=finalized,
            info=self.info,
        )

    def marker_due(self, now_ms: int) -> bool:
        """True (and the marker counts as rewritten) when it is a minute old and the stream open."""
        if self.closed is not None or now_ms - self.marker_written_ms < MARKER_REFRESH_MS:
            return False
        self.marker_written_ms = now_ms
        return True

    def report(self, drained: bool = True) -> StreamReport:
        """The stream's chunk outcomes so far, as ``finalize`` reports them."""
        return StreamReport(
            data_id=self.data_id,
            spooled=self.spooled,
            uploaded=self.uploaded,
            dropped=self.dropped,
            failed=self.failed,
            purged=self.purged,
            pending=self.pending,
            lost=list(self.losses),
            drained=drained,
            closed=self.closed,
        )

    def counts(self) -> dict[str, Any]:
        """The reference's counter keys (``spool_status``), plus bytes spooled and uploaded."""
        counts = self.report().as_dict()
        del counts["data_id"], counts["drained"]
        counts.update(bytes_spooled=self.spooled_bytes, bytes_uploaded=self.uploaded_bytes)
        return counts
