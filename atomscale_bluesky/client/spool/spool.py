"""The disk spool every chunk passes through before the network (protocol §5.2 semantics).

A chunk is written here (payload and sidecar fsynced) before any upload starts and deleted only
once the backend acknowledged it, so a slow or broken network never blocks the caller and a
crash or power loss loses nothing. Streams are keyed by their local id (the folder name: the
remote data_id when the server created the stream at once, else ``local-…``). ``Spool`` is the
thread-safe front of the spool's parts: the files (disk_format), the byte limits (capacity),
the upload order (upload_queue), retention (expiry), resuming what an earlier client left
(recovery) and each stream's lifecycle (stream_state). It holds the one lock under which all
their state changes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO, Literal

from ..stamps import now_ms as host_now_ms
from . import disk_format
from .capacity import Capacity, FreeSpace
from .direct_write import DirectWriter
from .disk_format import Entry, Payload
from .expiry import ABANDON_AFTER_S, DEFAULT_RETENTION_S, ExpiryRules, log_discarded
from .held_payloads import HOLD_MAX_BYTES, HeldPayloads
from .quarantine import Quarantined
from .recovery import Recovered, recover_streams
from .stream_state import Fate, SpoolStream, Totals
from .upload_queue import UploadQueue

__all__ = ["Spool"]

log = logging.getLogger(__name__)

Check = Literal["go", "gone", "wait"]
"""What a worker does with a claimed entry: send it, forget it, or hand it back for later."""


class Spool:
    """Thread-safe spool: enqueue, claim/finish for upload workers, lifecycle, drain, recover."""

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
        fsync: bool = True,
        direct_io: bool = True,
        hold_bytes: int = HOLD_MAX_BYTES,
    ) -> None:
        self.root = Path(root)
        self.endpoint = endpoint
        self.fsync = fsync
        self._direct = DirectWriter(self.root, enabled=direct_io)
        self._held = HeldPayloads(hold_bytes)
        disk_format.make_private_dir(self.root)
        self._now = now_ms
        self.rules = ExpiryRules(
            DEFAULT_RETENTION_S if retention_s is None else retention_s, abandon_after_s
        )
        self._capacity = Capacity(
            self.root, max_bytes=max_bytes, min_free_bytes=min_free_bytes, free_space=free_space
        )
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._changes = 0  # counts the changes waiters are woken for
        self._queue = UploadQueue()
        self._streams: dict[str, SpoolStream] = {}
        self._marker_locks: dict[str, threading.Lock] = {}
        self._totals = Totals()
        self._seq = 0
        self.resumed: list[str] = []
        recovery = recover_streams(self.root, endpoint, self.rules, self._now(), fsync=fsync)
        self.quarantined: list[Quarantined] = list(recovery.quarantined)
        for recovered in recovery.streams:
            self._adopt(recovered)

    def _adopt(self, recovered: Recovered) -> None:
        """Count a stream found on disk and queue its entries."""
        stream = recovered.stream
        with self._lock:
            self._totals.spooled += stream.spooled
            self._totals.purged += stream.purged
            for entry in recovered.entries:
                self._seq = max(self._seq, entry.meta["seq"] + 1)
                self._capacity.add_stored(entry.nbytes)
                self._queue.add(entry)
            self._streams[stream.local_id] = stream
            self._marker_locks[stream.local_id] = threading.Lock()
            self.resumed.append(stream.local_id)

    # ---- streams ----

    def open_stream(
        self,
        local_id: str,
        kind: str,
        info: dict[str, Any] | None = None,
        *,
        data_id: str | None = None,
        create: dict[str, Any] | None = None,
        linked: bool = True,
    ) -> None:
        """Start spooling a new stream held by a live stream object (folder, lock, marker).

        ``data_id`` None: the server has not created it yet; ``create`` is the creation request
        a later client needs to create it (or a continuation part).
        """
        folder = disk_format.stream_folder(self.root, local_id)
        with self._lock:
            if local_id in self._streams:
                return
        fd = disk_format.create_stream_folder(folder, fsync=self.fsync)
        if fd is None:
            raise RuntimeError(f"another client is already spooling stream {local_id}")
        now = self._now()
        stream = SpoolStream(
            local_id,
            kind,
            folder,
            fd,
            now,
            now,
            now,
            dict(info or {}),
            data_ids=[data_id] if data_id else [],
            create=create,
            linked=linked,
            live=True,
        )
        try:
            disk_format.write_marker(folder, stream.marker(self.endpoint), fsync=self.fsync)
        except OSError as error:
            disk_format.unlock(fd)
            raise RuntimeError(f"cannot write to spool directory {folder}: {error}") from None
        with self._lock:
            self._streams[local_id] = stream
            self._marker_locks[local_id] = threading.Lock()
            self._notify_changed()  # the stream keeper creates a stream opened without an id

    def stream(self, stream_id: str) -> SpoolStream | None:
        """The stream whose local id, or one of whose remote ids, is ``stream_id``."""
        with self._lock:
            return self._find(stream_id)

    def _find(self, stream_id: str) -> SpoolStream | None:
        found = self._streams.get(stream_id)
        if found is not None:
            return found
        return next((s for s in self._streams.values() if stream_id in s.data_ids), None)

    def streams(self) -> list[SpoolStream]:
        """Every stream the spool holds (open, or closed and not yet forgotten)."""
        with self._lock:
            return list(self._streams.values())

    def _save_marker(self, stream: SpoolStream) -> None:
        """Write the stream's marker durably (one writer per stream at a time, newest state)."""
        lock = self._marker_locks.get(stream.local_id) or threading.Lock()
        with lock:
            with self._lock:
                if stream.closed == "refused":
                    return
                marker = stream.marker(self.endpoint)
                stream.marker_written_ms = self._now()
            disk_format.write_marker(stream.dir, marker, fsync=self.fsync)

    def _update(self, local_id: str, change: Callable[[SpoolStream], bool]) -> bool:
        """Apply ``change`` under the lock; if it returns True, save the marker and wake waiters."""
        with self._lock:
            stream = self._streams.get(local_id)
            if stream is None or not change(stream):
                return False
            self._notify_changed()
        self._save_marker(stream)
        return True

    def record_created(self, local_id: str, data_id: str, *, linked: bool) -> None:
        """The server created the stream as ``data_id`` (saved before any chunk uploads)."""

        def change(s: SpoolStream) -> bool:
            s.data_ids.append(data_id)
            s.linked = linked
            return True

        self._update(local_id, change)

    def record_linked(self, local_id: str) -> None:
        """The stream's sample, project and tags are linked (or given up): its chunks may go."""

        def change(s: SpoolStream) -> bool:
            s.linked = True
            return True

        self._update(local_id, change)

    def record_part(self, local_id: str, data_id: str) -> None:
        """A continuation part replaced a stale stream: pending chunks now go to ``data_id``."""

        def change(s: SpoolStream) -> bool:
            s.data_ids.append(data_id)
            s.needs_part = False
            s.last_upload_ms = self._now()
            return True

        self._update(local_id, change)

    def mark_needs_part(self, local_id: str, refused_data_id: str) -> bool:
        """The backend refused ``refused_data_id`` as stale; True if that is news."""
        with self._lock:
            stream = self._streams.get(local_id)
            if stream is None or stream.needs_part or stream.data_id != refused_data_id:
                return False
            stream.needs_part = True
            self._notify_changed()
            return True

    def request_finalize(self, local_id: str) -> None:
        """Remember (durably) that the stream is to be ended once every chunk is acknowledged."""

        def change(s: SpoolStream) -> bool:
            if s.finalize_requested or s.closed is not None:
                return False
            s.finalize_requested = True
            s.live = False
            return True

        self._update(local_id, change)

    # ---- enqueue ----

    def enqueue(
        self,
        local_id: str,
        chunk_idx: int,
        kind: str,
        metadata: dict[str, Any],
        payload: Payload,
    ) -> str | None:
        """Write one chunk durably; returns None when spooled, else the reason it was dropped.

        ``payload`` is the chunk's bytes, or a sequence of buffers that together are its bytes.
        The spool may keep the buffers to upload them: nothing may change them afterwards.
        """
        with self._lock:
            stream = self._streams.get(local_id)
            if stream is None:
                raise RuntimeError(f"no spool for stream {local_id}; call initialize(...) first")
            spooled_at = self._now()
            seq = self._seq
            self._seq += 1
        meta = disk_format.entry_meta(
            local_id, chunk_idx, spooled_at, seq, payload, kind, metadata, self.endpoint
        )
        payload_len = meta["shard_len"]
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
            disk_format.write_entry(entry, payload, sidecar, fsync=self.fsync, direct=self._direct)
        except OSError as error:
            with self._lock:
                self._capacity.unreserve(need)
                return self._drop(stream, chunk_idx, f"could not write to the spool: {error}")
        self._held.hold(entry.key, disk_format.payload_parts(payload), payload_len)
        with self._lock:
            if stream.closed is not None:
                self._capacity.unreserve(need)
                self._held.drop(entry.key)
                disk_format.remove_entry(entry)
                return self._drop(stream, chunk_idx, "stream was closed")
            self._capacity.store(need)
            stream.count_spooled(chunk_idx, payload_len)
            self._totals.spooled += 1
            self._queue.add(entry)
            self._notify_changed()
        return None

    def _drop(self, stream: SpoolStream, chunk_idx: int, reason: str) -> str:
        """Count a chunk that never reached the spool (called under the lock)."""
        self._totals.dropped += 1
        stream.count_dropped(chunk_idx, reason)
        log.warning(
            "dropped chunk %d of stream %s: %s (%d dropped from this stream so far)",
            chunk_idx,
            stream.data_id or stream.local_id,
            reason,
            stream.dropped,
        )
        return reason

    # ---- upload workers ----

    def _ready(self, local_id: str) -> bool:
        stream = self._streams.get(local_id)
        return stream is not None and stream.ready

    def claim(self, stop: threading.Event, timeout: float = 1.0) -> Entry | None:
        """The oldest entry of a ready stream no worker holds, now held by the caller.

        None after ``timeout``.
        """
        deadline = time.monotonic() + timeout
        with self._lock:
            while not stop.is_set():
                entry = self._queue.claim_oldest(self._ready)
                if entry is not None:
                    return entry
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._changed.wait(remaining)
        return None

    def release(self, entry: Entry) -> None:
        """Return a claimed entry untouched (client closing, or its stream not ready)."""
        with self._lock:
            if self._queue.release(entry):
                self._notify_changed()

    def cancel_event(self, entry: Entry) -> threading.Event:
        """Set when the client closes, so a worker waiting to retry stops waiting."""
        with self._lock:
            stream = self._streams.get(entry.local_id)
            return stream.cancel if stream is not None else threading.Event()

    def destination(self, entry: Entry) -> str | None:
        """The remote data_id the entry goes to now (its stream's current part)."""
        with self._lock:
            stream = self._streams.get(entry.local_id)
            return None if stream is None else stream.data_id

    def check(self, entry: Entry) -> Check:
        """Before an attempt: "go", "gone" (left the queue; purged if expired), or "wait"."""
        now = self._now()
        with self._lock:
            if entry not in self._queue:
                return "gone"
            stream = self._streams.get(entry.local_id)
            if stream is None:
                return "gone"
            expired = self.rules.expired(entry, now)
            ready = stream.ready
        if expired:
            self.finish(entry, "purged", self.rules.retention_reason)
            return "gone"
        return "go" if ready else "wait"

    def finish(self, entry: Entry, fate: Fate, reason: str = "") -> None:
        """Remove an entry and count its fate: "uploaded", "failed" or "purged"."""
        with self._lock:
            if not self._queue.remove(entry):
                return
        self._held.drop(entry.key)
        if fate == "purged":
            log_discarded(entry, reason)
        disk_format.remove_entry(entry)
        now = self._now()
        refresh: SpoolStream | None = None
        with self._lock:
            self._capacity.release(entry.nbytes)
            self._totals.add(fate)
            stream = self._streams.get(entry.local_id)
            if stream is not None:
                if fate == "uploaded":
                    stream.count_uploaded(entry.chunk_idx, entry.shard_len, now)
                    if stream.marker_due(now):
                        refresh = stream
                else:
                    stream.count_lost(fate, entry.chunk_idx, reason)
            self._notify_changed()
        if refresh is not None:
            try:
                self._save_marker(refresh)
            except OSError as error:
                log.debug("could not refresh the marker of %s: %s", refresh.local_id, error)

    def open_payload(self, entry: Entry) -> BinaryIO:
        """The spooled chunk's bytes, open for reading: the payload still held in memory, else its
        file (uploads stream it; nothing is read whole)."""
        held = self._held.reader(entry.key)
        return held if held is not None else disk_format.open_payload(entry)

    # ---- drain, close, status ----

    def drained(self, local_id: str) -> bool:
        """Nothing pending and the stream exists on the server (so it can be ended)."""
        with self._lock:
            stream = self._streams.get(local_id)
            return stream is None or stream.closed is not None or self._drained(stream)

    @staticmethod
    def _drained(stream: SpoolStream) -> bool:
        return stream.pending == 0 and stream.ready

    def drain(self, local_id: str, timeout: float) -> bool:
        """Wait until the stream is drained (or ``timeout`` s); True if it is."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                stream = self._streams.get(local_id)
                if stream is None or stream.closed is not None or self._drained(stream):
                    return True
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(min(remaining, 1.0))

    @property
    def changes(self) -> int:
        """How many changes the spool has had: pass it to :meth:`wait_changed` to miss none."""
        with self._lock:
            return self._changes

    def wait_changed(self, timeout: float, seen: int | None = None) -> None:
        """Sleep until something in the spool changes, or ``timeout`` s; with ``seen`` (an
        earlier :attr:`changes`), not at all if it has changed since."""
        with self._lock:
            if seen is None or seen == self._changes:
                self._changed.wait(timeout)

    def _notify_changed(self) -> None:
        """Under the lock: wake every waiter for a change."""
        self._changes += 1
        self._changed.notify_all()

    def close_stream(self, local_id: str, *, ended: bool = True) -> bool:
        """The stream was ended on the server (or its end refused): release it, delete its folder.

        Refused (False) while anything of it is pending: nothing unsent is ever deleted here.
        """
        with self._lock:
            stream = self._streams.get(local_id)
            if stream is None or stream.closed is not None or stream.pending:
                return False
            stream.ended = ended
            stream.closed = "finalized"
            stream.cancel.set()
            self._notify_changed()
        try:
            self._save_marker(stream)
        except OSError as error:
            log.debug("could not mark %s finalized: %s", local_id, error)
        fd, stream.lock_fd = stream.lock_fd, None
        disk_format.unlock(fd)
        disk_format.remove_folder(stream.dir)
        return True

    def fail_stream(self, local_id: str, reason: str) -> None:
        """The backend refused to create the stream: its chunks fail with ``reason``.

        Its folder is kept empty of chunks and removed; later pushes are dropped.
        """
        with self._lock:
            stream = self._streams.get(local_id)
            if stream is None or stream.closed is not None:
                return
            entries = self._queue.remove_stream(local_id)
            for entry in entries:
                self._capacity.release(entry.nbytes)
                self._totals.failed += 1
                stream.count_lost("failed", entry.chunk_idx, reason)
            stream.closed = "refused"
            stream.cancel.set()
            fd, stream.lock_fd = stream.lock_fd, None
            self._notify_changed()
        for entry in entries:
            self._held.drop(entry.key)
            disk_format.remove_entry(entry)
        disk_format.unlock(fd)
        disk_format.remove_folder(stream.dir)

    def forget_stream(self, local_id: str) -> None:
        """Drop the record of a closed stream (its counts stay in the totals)."""
        with self._lock:
            stream = self._streams.get(local_id)
            if stream is not None and stream.closed is not None:
                del self._streams[local_id]
                self._marker_locks.pop(local_id, None)

    def add_auth_pause(self, seconds: float) -> None:
        """Uploads waited ``seconds`` on a refused key: charge every stream that was waiting."""
        with self._lock:
            for stream in self._streams.values():
                if stream.closed is None and (
                    stream.pending or not stream.ready or stream.finalize_requested
                ):
                    stream.auth_paused_s += seconds

    def sweep(self) -> None:
        """Purge entries past retention; ask idle resumed streams of dead processes to finalize."""
        now = self._now()
        with self._lock:
            orphaned = [s.local_id for s in self._streams.values() if self.rules.orphaned(s, now)]
            expired = [e for e in self._queue.idle() if self.rules.expired(e, now)]
        for local_id in orphaned:
            log.info(
                "stream %s of an earlier process has been idle for over %.0f s; it will be "
                "ended once its chunks are uploaded",
                local_id,
                self.rules.abandon_after_s,
            )
            self.request_finalize(local_id)
        for entry in expired:
            self.finish(entry, "purged", self.rules.retention_reason)

    def status(self) -> dict[str, Any]:
        """The reference's ``spool_status()`` keys, plus the files moved to the quarantine."""
        free = self._capacity.free_bytes()
        with self._lock:
            return {
                "dir": str(self.root),
                "bytes": self._capacity.used,
                "max_bytes": self._capacity.max_bytes,
                "min_free_bytes": self._capacity.min_free_bytes,
                "free_bytes": free,
                "chunks_pending": len(self._queue),
                "oldest_pending_ms": self._queue.oldest_ms(),
                **self._totals.as_status(),
                "streams": {d: s.counts() for d, s in sorted(self._streams.items())},
                "quarantined": [q.as_dict() for q in self.quarantined],
                "fsync": self.fsync,
                "direct_io": self._direct.enabled,
                "held_bytes": self._held.nbytes,
            }

    def close(self) -> None:
        """Release every lock and wake waiters; files stay for the next client to resume."""
        with self._lock:
            streams = list(self._streams.values())
            for stream in streams:
                stream.cancel.set()
            self._notify_changed()
        self._held.close()
        for stream in streams:
            fd, stream.lock_fd = stream.lock_fd, None
            disk_format.unlock(fd)
