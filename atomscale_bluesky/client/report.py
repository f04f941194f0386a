"""What became of a stream's chunks: the record ``finalize`` returns."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["StreamReport"]


@dataclass(frozen=True)
class StreamReport:
    """Chunk outcomes of one stream.

    ``spooled`` counts chunks written to the spool (resumed ones included); ``dropped`` chunks
    never reached it (spool full, disk low, write failed, stream closed); ``failed`` were refused
    by the backend; ``purged`` were spooled but discarded unsent; ``pending`` are still waiting.
    ``lost`` lists ``(chunk_index, reason)`` for every chunk not uploaded (at most 1000).
    """

    data_id: str
    spooled: int = 0
    uploaded: int = 0
    dropped: int = 0
    failed: int = 0
    purged: int = 0
    pending: int = 0
    lost: list[tuple[int, str]] = field(default_factory=list)
    drained: bool = True
    closed: str | None = None

    @property
    def not_uploaded(self) -> int:
        """Dropped + failed + purged: chunks the backend will never see."""
        return self.dropped + self.failed + self.purged

    @property
    def ok(self) -> bool:
        """True when every chunk reached the backend."""
        return self.not_uploaded == 0 and self.pending == 0

    def as_dict(self) -> dict[str, object]:
        """The reference client's ``finalize`` dict keys, plus ``data_id``."""
        return {
            "data_id": self.data_id,
            "chunks_spooled": self.spooled,
            "chunks_uploaded": self.uploaded,
            "chunks_dropped": self.dropped,
            "chunks_failed": self.failed,
            "chunks_purged": self.purged,
            "chunks_pending": self.pending,
            "chunks_not_uploaded": self.not_uploaded,
            "lost": list(self.lost),
            "closed": self.closed,
            "drained": self.drained,
        }
