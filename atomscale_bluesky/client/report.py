"""What became of a stream's chunks: the record ``finalize`` and ``drain`` return."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["StreamReport"]


@dataclass(frozen=True)
class StreamReport:
    """Chunk outcomes of one stream, exact at the moment it was read.

    Every chunk the spool accepted is in exactly one of ``uploaded`` (acknowledged by the
    backend), ``pending`` (still in the spool, uploading; their indices in ``pending_chunks``), ``failed`` (refused by the backend as
    invalid, with its reason) or ``purged`` (discarded unsent: past the retention, or damaged on
    disk and quarantined), so ``spooled == uploaded + pending + failed + purged``. ``dropped``
    chunks never reached the spool (spool full, disk low, write failed, stream closed).
    ``lost`` lists ``(chunk_index, reason)`` for every dropped, failed or purged chunk (at most
    1000).

    ``data_id`` is the remote id (None while the server has not created the stream yet),
    ``local_id`` the spool's key of the stream, ``parts`` the remote ids of continuation streams
    made after the backend refused a stale stream, ``auth_paused_s`` the seconds this stream's
    uploads waited on a refused API key, ``finalized`` whether the end request was sent.
    """

    data_id: str | None
    spooled: int = 0
    uploaded: int = 0
    dropped: int = 0
    failed: int = 0
    purged: int = 0
    pending: int = 0
    pending_chunks: list[int] = field(default_factory=list)
    lost: list[tuple[int, str]] = field(default_factory=list)
    drained: bool = True
    closed: str | None = None
    local_id: str = ""
    parts: list[str] = field(default_factory=list)
    auth_paused_s: float = 0.0
    finalized: bool = False

    @property
    def not_uploaded(self) -> int:
        """Dropped + failed + purged: chunks the backend will never see."""
        return self.dropped + self.failed + self.purged

    @property
    def ok(self) -> bool:
        """True when every chunk reached the backend."""
        return self.not_uploaded == 0 and self.pending == 0

    @property
    def data_ids(self) -> list[str]:
        """Every remote id of the stream: the first, then its continuation parts."""
        return ([self.data_id] if self.data_id else []) + list(self.parts)

    def as_dict(self) -> dict[str, object]:
        """The reference client's ``finalize`` dict keys, plus this client's own."""
        return {
            "data_id": self.data_id,
            "local_id": self.local_id,
            "chunks_spooled": self.spooled,
            "chunks_uploaded": self.uploaded,
            "chunks_dropped": self.dropped,
            "chunks_failed": self.failed,
            "chunks_purged": self.purged,
            "chunks_pending": self.pending,
            "pending_chunks": list(self.pending_chunks),
            "chunks_not_uploaded": self.not_uploaded,
            "lost": list(self.lost),
            "closed": self.closed,
            "drained": self.drained,
            "parts": list(self.parts),
            "auth_paused_s": self.auth_paused_s,
            "finalized": self.finalized,
        }
