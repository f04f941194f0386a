"""What the spool knows of each stream and of all of them: lifecycle, chunk outcomes, lock."""

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
    """One stream's folder, lock, lifecycle, counters and lost chunks.

    Lifecycle: ``data_ids`` is empty until the server created the stream (then its chunks wait),
    ``linked`` false until its sample/project/tags are linked, ``needs_part`` true after the
    backend refused it as stale (its chunks wait for a continuation part), ``finalize_requested``
    once finalize was asked for (durable), ``ended`` once the end request succeeded. ``live``
    streams are held open by a stream object of this client and are never given up for
    silence.
    """

    local_id: str
    kind: str
    dir: Path
    lock_fd: int | None
    created_at_ms: int
    last_upload_ms: int
    marker_written_ms: int
    info: dict[str, Any] = field(default_factory=dict)
    data_ids: list[str] = field(default_factory=list)
    create: dict[str, Any] | None = None
    linked: bool = True
    finalize_requested: bool = False
    resumed: bool = False
    live: bool = False
    ended: bool = False
    needs_part: bool = False
    closed: str | None = None
    spooled: int = 0
    uploaded: int = 0
    dropped: int = 0
    failed: int = 0
    purged: int = 0
    pending_chunks: set[int] = field(default_factory=set)  # indices spooled, not finished
    spooled_bytes: int = 0
    uploaded_bytes: int = 0
    auth_paused_s: float = 0.0
    losses: list[tuple[int, str]] = field(default_factory=list)
    cancel: threading.Event = field(default_factory=threading.Event)

    @property
    def data_id(self) -> str | None:
        """The remote id chunks go to now (the last part); None until the server created it."""
        return self.data_ids[-1] if self.data_ids else None

    @property
    def pending(self) -> int:
        """Chunks spooled and not yet uploaded, failed or purged."""
        return len(self.pending_chunks)

    @property
    def first_data_id(self) -> str | None:
        return self.data_ids[0] if self.data_ids else None

    @property
    def ready(self) -> bool:
        """Its chunks may be uploaded: created, linked, not waiting for a new part, open."""
        return bool(self.data_ids) and self.linked and not self.needs_part and self.closed is None

    def ids(self) -> set[str]:
        """Every name the stream answers to: its local id and all its remote ids."""
        return {self.local_id, *self.data_ids}

    def lose(self, chunk_idx: int, reason: str) -> None:
        """Note why a chunk will not be uploaded (the first ``MAX_LISTED_LOSSES``)."""
        if len(self.losses) < MAX_LISTED_LOSSES:
            self.losses.append((chunk_idx, reason))

    def count_spooled(self, chunk_idx: int, nbytes: int) -> None:
        self.spooled += 1
        self.pending_chunks.add(chunk_idx)
        self.spooled_bytes += nbytes

    def count_dropped(self, chunk_idx: int, reason: str) -> None:
        self.dropped += 1
        self.lose(chunk_idx, f"dropped: {reason}")

    def count_uploaded(self, chunk_idx: int, nbytes: int, now_ms: int) -> None:
        self.uploaded += 1
        self.pending_chunks.discard(chunk_idx)
        self.uploaded_bytes += nbytes
        self.last_upload_ms = now_ms

    def count_lost(self, fate: Literal["failed", "purged"], chunk_idx: int, reason: str) -> None:
        setattr(self, fate, getattr(self, fate) + 1)
        self.pending_chunks.discard(chunk_idx)
        self.lose(chunk_idx, reason)

    def marker(self, endpoint: str) -> StreamMarker:
        return StreamMarker(
            local_id=self.local_id,
            endpoint=endpoint,
            kind=self.kind,
            created_at_ms=self.created_at_ms,
            last_upload_ms=self.last_upload_ms,
            finalized=self.ended,
            info=self.info,
            data_ids=tuple(self.data_ids),
            create=self.create,
            linked=self.linked,
            finalize_requested=self.finalize_requested,
        )

    def marker_due(self, now_ms: int) -> bool:
        """True (and the marker counts as rewritten) when it is a minute old and the stream open."""
        if self.closed is not None or now_ms - self.marker_written_ms < MARKER_REFRESH_MS:
            return False
        self.marker_written_ms = now_ms
        return True

    def report(self, drained: bool = True, auth_paused_now_s: float = 0.0) -> StreamReport:
        """The stream's chunk outcomes so far (``auth_paused_now_s``: a pause still going on)."""
        return StreamReport(
            data_id=self.first_data_id,
            spooled=self.spooled,
            uploaded=self.uploaded,
            dropped=self.dropped,
            failed=self.failed,
            purged=self.purged,
            pending=self.pending,
            pending_chunks=sorted(self.pending_chunks),
            lost=list(self.losses),
            drained=drained,
            closed=self.closed,
            local_id=self.local_id,
            parts=list(self.data_ids[1:]),
            auth_paused_s=self.auth_paused_s + auth_paused_now_s,
            finalized=self.ended,
        )

    def counts(self) -> dict[str, Any]:
        """The reference's counter keys (``spool_status``), plus bytes spooled and uploaded."""
        counts = self.report().as_dict()
        del counts["drained"]
        counts.update(
            bytes_spooled=self.spooled_bytes,
            bytes_uploaded=self.uploaded_bytes,
            opened=bool(self.data_ids),
            finalize_requested=self.finalize_requested,
        )
        return counts
