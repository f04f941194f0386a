"""The disk spool every chunk passes through before the network (protocol §5.2 semantics).

A chunk is written here before any upload starts and deleted only once the backend acknowledged
it, so a slow or broken network never blocks the caller and a crash loses nothing. ``Spool`` is
the thread-safe front of the spool's parts: the files (disk_format), the byte limits (capacity),
the upload order (upload_queue), giving up unsent chunks (expiry) and resuming what an earlier
client left (recovery). It holds the one lock under which all their state changes.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from ..stamps import now_ms as host_now_ms
from . import disk_format
from .capacity import Capacity, FreeSpace
from .disk_format import Entry, Payload, StreamMarker
from .expiry import (
    ABANDON_AFTER_S,
    DEFAULT_RETENTION_S,
    ExpiryRules,
    closing_reason,
    log_abandoned,
    log_discarded,
)
from .recovery import Recovered, recover_streams
from .stream_state import Fate, SpoolStream, Totals
from .upload_queue import UploadQueue

__all__ = ["Spool"]

log = logging.getLogger("atomscale_bluesky.client.spool")


class Spool:
    """Thread-safe spool: enqueue, claim/finish for upload workers, drain, close, recover."""

    def __init__(
        self,
        root: Path,
        endpoint: str,
        *,
        max_bytes: int | None = None,
        min_free_bytes: int | None = None,
        retention_s: float | None = None,
        abandon_after_s: float = ABANDON_AFTER_S,
        free_space: FreeSpace | None = None,
        now_ms: Callable[[], int] = host_now_ms,
    ) -> None:
        self.root = Path(root)
        self.endpoint = endpoint
        self.root.mkdir(parents=True, exist_ok=True)
        self._now = now_ms
        self.rules = ExpiryRules(
            DEFAULT_RETENTION_S if retention_s is None else retention_s, abandon_after_s
        )
        self._capacity = Capacity(
            self.root, max_bytes=max_bytes, min_free_bytes=min_free_bytes, free_space=free_space
        )
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._queue = UploadQueue()
        self._streams: dict[str, SpoolStream] = {}
        self._totals = Totals()
        self._seq = 0
        self.resumed: list[str] = []
        for recovered in recover_streams(self.root, endpoint, self.rules, self._now()):
            self._adopt(recovered)

    def _adopt(self, recovered: Recovered) -> None:
        """Count a stream found on disk and, unless it was abandoned, queue its entries."""
        stream = recovered.stream
        with self._lock:
            self._totals.spooled += stream.spooled
            self._totals.purged += stream.purged
            if recovered.abandoned:
                return
            for entry in recovered.entries:
                self._seq = max(self._seq, entry.meta["seq"] + 1)
                self._capacity.add_stored(entry.nbytes)
                self._queue.add(entry)
            self._streams[stream.data_id] = stream
            self.resumed.append(stream.data_id)

    # ---- streams ----

    def open_stream(self, data_id: str, kind: str, info: dict[str, Any] | None = None) -> None:
        """Start spooling a new stream (creates its folder, lock and marker)."""
        folder = disk_format.stream_folder(self.root, data_id)
        with self._lock:
            if data_id in self._streams:
                return
        fd = disk_format.create_stream_folder(folder)
        if fd is None:
            raise RuntimeError(f"another client is already spooling stream {data_id}")
        now = self._now()
        stream = SpoolStream(data_id, kind, folder, fd, now, now, now, dict(info or {}))
        try:
            disk_format.write_marker(folder, stream.marker(self.endpoint))
        except OSError as error:
            disk_format.unlock(fd)
            raise RuntimeError(f"cannot write to spool directory {folder}: {error}") from None
        with self._lock:
            self._streams[data_id] = stream

    def stream(self, data_id: str) -> SpoolStream | None:
        with self._lock:
            return self._streams.get(data_id)

    # ---- enqueue ----

    def enqueue(
        self,
        data_id: str,
        chunk_idx: int,
        kind: str,
        metadata: dict[str, Any],
        payload: Payload,
    ) -> str | None:
        """Write one chunk; returns None when spooled, else the reason it was dropped.

        ``payload`` is the chunk's bytes, or a sequence of buffers that together are its bytes.
        """
        payload_len = disk_format.payload_nbytes(payload)
        with self._lock:
            stream = self._streams.get(data_id)
            if stream is None:
                raise RuntimeError(f"no spool for stream {data_id}; call initialize(...) first")
            spooled_at = self._now()
            seq = self._seq
            self._seq += 1
        meta = disk_format.entry_meta(
            data_id, chunk_idx, spooled_at, seq, payload_len, kind, metadata
        )
        sidecar = disk_format.sidecar_bytes(meta)
        need = payload_len + len(sidecar)
        entry = Entry(meta, stream.dir, need)
        with self._lock:
            if stream.closed is not None:
                return self._drop(stream, chunk_idx, f"stream was {stream.closed}")
            refused = self._capacity.reserve(need)
            if refused is not None:
                return self._drop(stream, chunk_idx, refused)
        try:
            disk_format.write_entry(entry, payload, sidecar)
        except OSError as error:
            with self._lock:
                self._capacity.unreserve(need)
                return self._drop(stream, chunk_idx, f"could not write to the spool: {error}")
        with self._lock:
            if stream.closed is not None:
                self._capacity.unreserve(need)
                disk_format.remove_entry(entry)
                return self._drop(stream, chunk_idx, "stream was closed")
            self._capacity.store(need)
            stream.count_spooled(payload_len)
            self._totals.spooled += 1
            self._queue.add(entry)
            self._changed.notify_all()
        return None

    def _drop(self, stream: SpoolStream, chunk_idx: int, reason: str) -> str:
        """Count a chunk that never reached the spool (called under the lock)."""
        self._totals.dropped += 1
        stream.count_dropped(chunk_idx, reason)
        log.warning(
            "dropped chunk %d of stream %s: %s (%d dropped from this stream so far)",
            chunk_idx,
            stream.data_id,
            reason,
            stream.dropped,
        )
        return reason

    # ---- upload workers ----

    def claim(self, stop: threading.Event, timeout: float = 1.0) -> Entry | None:
        """The oldest entry no worker holds, now held by the caller; None after ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while not stop.is_set():
                entry = self._queue.claim_oldest()
                if entry is not None:
                    return entry
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._changed.wait(remaining)
        return None

    def release(self, entry: Entry) -> None:
        """Return a claimed entry untouched (client closing)."""
        with self._lock:
            if self._queue.release(entry):
                self._changed.notify_all()

    def cancel_event(self, entry: Entry) -> threading.Event:
        """Set when the entry's stream closes, so a worker waiting to retry stops waiting."""
        with self._lock:
            stream = self._streams.get(entry.data_id)
            return stream.cancel if stream is not None else threading.Event()

    def stale(self, entry: Entry) -> bool:
        """True when the entry must not be tried again (handles expiry and abandonment)."""
        now = self._now()
        with self._lock:
            if entry not in self._queue:
                return True
            stream = self._streams.get(entry.data_id)
            if stream is None or stream.closed is not None:
                return True
            abandoned = self.rules.abandoned(stream, now)
            expired = self.rules.expired(entry, now)
        if abandoned:
            self.abandon(entry.data_id)
            return True
        if expired:
            self.finish(entry, "purged", self.rules.retention_reason)
            return True
        return False

    def finish(self, entry: Entry, fate: Fate, reason: str = "") -> None:
        """Remove an entry and count its fate: "uploaded", "failed" or "purged"."""
        with self._lock:
            if not self._queue.remove(entry):
                return
        if fate == "purged":
            log_discarded(entry, reason)
        disk_format.remove_entry(entry)
        now = self._now()
        marker: tuple[Path, StreamMarker] | None = None
        with self._lock:
            self._capacity.release(entry.nbytes)
            self._totals.add(fate)
            stream = self._streams.get(entry.data_id)
            if stream is not None:
                if fate == "uploaded":
                    stream.count_uploaded(entry.shard_len, now)
                    if stream.marker_due(now):
                        marker = (stream.dir, stream.marker(self.endpoint))
                else:
                    stream.count_lost(fate, entry.chunk_idx, reason)
            self._changed.notify_all()
        if marker is not None:
            with contextlib.suppress(OSError):
                disk_format.write_marker(*marker)

    def open_payload(self, entry: Entry) -> BinaryIO:
        """The spooled chunk's file, open for reading (uploads stream it; nothing is read whole)."""
        return disk_format.open_payload(entry)

    # ---- drain, close, expiry, status ----

    def drain(self, data_id: str, timeout: float) -> bool:
        """Wait until the stream has nothing pending (or ``timeout`` s); True if drained."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                stream = self._streams.get(data_id)
                if stream is None or stream.pending == 0:
                    return True
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(min(remaining, 1.0))

    def close_stream(self, data_id: str, reason: str) -> dict[str, Any] | None:
        """Purge what remains, mark finalized, release the lock and delete the folder."""
        with self._lock:
            stream = self._streams.get(data_id)
            if stream is None:
                return None
            if stream.closed is not None:
                return stream.counts()
            stream.closed = reason
            stream.cancel.set()
            for entry in self._queue.remove_stream(data_id):
                self._capacity.release(entry.nbytes)
                self._totals.purged += 1
                stream.count_lost("purged", entry.chunk_idx, closing_reason(reason))
            stream.pending = 0
            marker = stream.marker(self.endpoint, finalized=True)
            fd, stream.lock_fd = stream.lock_fd, None
            self._changed.notify_all()
        with contextlib.suppress(OSError):
            disk_format.write_marker(stream.dir, marker)
        disk_format.unlock(fd)
        disk_format.remove_folder(stream.dir)
        return stream.counts()

    def forget_stream(self, data_id: str) -> None:
        """Drop the record of a closed stream (its counts stay in the totals)."""
        with self._lock:
            stream = self._streams.get(data_id)
            if stream is not None and stream.closed is not None:
                del self._streams[data_id]

    def abandon(self, data_id: str) -> None:
        """Close a stream the backend has given up on, purging its entries."""
        stream = self.stream(data_id)
        if stream is None or stream.closed is not None:
            return
        log_abandoned(data_id, self.rules, stream.pending)
        self.close_stream(data_id, "abandoned")

    def sweep(self) -> None:
        """Abandon silent RHEED streams and purge entries past retention (every 60 s)."""
        now = self._now()
        with self._lock:
            abandoned = [
                s.data_id
                for s in self._streams.values()
                if s.closed is None and self.rules.abandoned(s, now)
            ]
            expired = [e for e in self._queue.idle() if self.rules.expired(e, now)]
        for data_id in abandoned:
            self.abandon(data_id)
        for entry in expired:
            self.finish(entry, "purged", self.rules.retention_reason)

    def status(self) -> dict[str, Any]:
        """The reference's ``spool_status()`` keys."""
        free = self._capacity.free_bytes()
        with self._lock:
            return {
                "dir": str(self.root),
                "bytes": self._capacity.used,
                "max_bytes": self._capacity.max_bytes,
                "min_free_bytes": self._capacity.min_free_bytes,
                "free_bytes": free,
                "chunks_pending": len(self._queue),
                **self._totals.as_status(),
                "streams": {d: s.counts() for d, s in sorted(self._streams.items())},
            }

    def close(self) -> None:
        """Release every lock and wake waiters; files stay for the next client to resume."""
        with self._lock:
            streams = list(self._streams.values())
            for stream in streams:
                stream.cancel.set()
            self._changed.notify_all()
        for stream in streams:
            fd, stream.lock_fd = stream.lock_fd, None
            disk_format.unlock(fd)
