"""The disk spool every chunk passes through before the network (protocol §5.2 semantics).

A chunk is written here before any upload starts and deleted only once the backend acknowledged
it, so a slow or broken network never blocks the caller and a crash loses nothing.

Layout, one folder per stream, ``<root>/<data_id>/``:

* ``stream.json``: ``{"version", "data_id", "endpoint", "kind" ("rheed" | "timeseries"),
  "created_at_ms", "last_upload_ms", "finalized", "info"}`` (``info`` holds the stream's
  settings, e.g. fps; never the API key). ``last_upload_ms`` is rewritten at most every 60 s.
* ``.lock``: an empty file held with ``fcntl.flock`` while a live client owns the stream, so a
  second client (in this or another process) never steals its entries.
* per chunk, the stem ``{spooled_at_ms:013}-{seq:010}-c{chunk_idx}``: ``<stem>.zarr`` (RHEED: the
  shard, exactly the PUT body) or ``<stem>.body`` (time series: the JSON request body), and
  ``<stem>.json``, the sidecar ``{"version", "data_id", "chunk_idx", "spooled_at_ms", "seq",
  "shard_len", "kind", "metadata"}``. Payload first, sidecar last, each via ``<file>.tmp`` and a
  rename, so an entry exists only once complete; deletion removes the sidecar first.

Limits on enqueue, with the reference's defaults and reasons: a byte cap (default min(20 GB,
10 % of free disk at open)), a free-disk floor (default 1 GB) and a write failure drop the
incoming chunk (``dropped: ...``); entries older than the retention (24 h) are purged; a RHEED
stream with no confirmed upload for 2 h is abandoned (the backend has closed it).
"""

from __future__ import annotations

import bisect
import contextlib
import fcntl
import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from .report import StreamReport

__all__ = ["Entry", "Spool", "SpoolStream", "default_spool_root"]

log = logging.getLogger("atomscale_bluesky.client.spool")

FORMAT_VERSION = 1
MAX_BYTES_CEILING = 20_000_000_000
MAX_BYTES_FREE_DIVISOR = 10
DEFAULT_MIN_FREE_BYTES = 1_000_000_000
DEFAULT_RETENTION_S = 24 * 3600.0
ABANDON_AFTER_S = 2 * 3600.0
MARKER_REFRESH_MS = 60_000
MAX_LISTED_LOSSES = 1000
SPOOL_DIR_ENV = "ATOMSCALE_BLUESKY_SPOOL_DIR"

MARKER_FILE = "stream.json"
LOCK_FILE = ".lock"
SIDECAR_EXT = "json"
PAYLOAD_EXT = {"rheed": "zarr", "timeseries": "body"}

EntryKey = tuple[int, int, str]


def default_spool_root() -> Path:
    """``$ATOMSCALE_BLUESKY_SPOOL_DIR``, else ``<user cache>/atomscale-bluesky/spool``.

    Deliberately not the official client's folder, so the two never resume each other's files.
    """
    env = os.environ.get(SPOOL_DIR_ENV)
    if env:
        return Path(env)
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "atomscale-bluesky" / "spool"


def _hours(seconds: float) -> str:
    """Hours as Rust prints an f64: ``24`` rather than ``24.0``."""
    value = seconds / 3600.0
    return str(int(value)) if value == int(value) else repr(value)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _nbytes(parts: bytes | list[Any]) -> int:
    if isinstance(parts, bytes):
        return len(parts)
    return sum(memoryview(part).nbytes for part in parts)


def _write_atomically(path: Path, data: bytes | list[Any]) -> None:
    """Write ``data`` (bytes, or buffers written one after another) to ``path`` via a rename."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as fh:
            if isinstance(data, bytes):
                fh.write(data)
            else:
                for part in data:
                    fh.write(part)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def _lock_dir(path: Path) -> int | None:
    """An exclusive flock on ``<dir>/.lock``; None when a live client holds it."""
    fd = os.open(path / LOCK_FILE, os.O_CREAT | os.O_WRONLY, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except OSError:
        os.close(fd)
        raise
    return fd


def _unlock(fd: int | None) -> None:
    if fd is not None:
        with contextlib.suppress(OSError):
            os.close(fd)


def _remove_dir(path: Path) -> None:
    try:
        shutil.rmtree(path)
    except FileNotFoundError:
        pass
    except OSError as error:
        log.warning("could not remove %s: %s", path, error)


@dataclass
class Entry:
    """One spooled chunk; ``meta`` is its sidecar."""

    meta: dict[str, Any]
    dir: Path
    nbytes: int
    in_flight: bool = False

    @property
    def key(self) -> EntryKey:
        return (self.meta["spooled_at_ms"], self.meta["seq"], self.meta["data_id"])

    @property
    def stem(self) -> str:
        m = self.meta
        return f"{m['spooled_at_ms']:013d}-{m['seq']:010d}-c{m['chunk_idx']}"

    @property
    def payload_path(self) -> Path:
        return self.dir / f"{self.stem}.{PAYLOAD_EXT[self.meta.get('kind', 'rheed')]}"

    @property
    def sidecar_path(self) -> Path:
        return self.dir / f"{self.stem}.{SIDECAR_EXT}"


@dataclass
class SpoolStream:
    """What the spool knows of one stream: files, lock, counters and lost chunks."""

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
        if len(self.losses) < MAX_LISTED_LOSSES:
            self.losses.append((chunk_idx, reason))

    def marker(self, endpoint: str, finalized: bool) -> bytes:
        return json.dumps(
            {
                "version": FORMAT_VERSION,
                "data_id": self.data_id,
                "endpoint": endpoint,
                "kind": self.kind,
                "created_at_ms": self.created_at_ms,
                "last_upload_ms": self.last_upload_ms,
                "finalized": finalized,
                "info": self.info,
            }
        ).encode()

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
        free_space: Callable[[Path], int] | None = None,
        now_ms: Callable[[], int] = _now_ms,
    ) -> None:
        self.root = Path(root)
        self.endpoint = endpoint
        self.root.mkdir(parents=True, exist_ok=True)
        self._free_space = free_space or (lambda p: shutil.disk_usage(p).free)
        self._now = now_ms
        self.min_free_bytes = DEFAULT_MIN_FREE_BYTES if min_free_bytes is None else min_free_bytes
        self.retention_s = DEFAULT_RETENTION_S if retention_s is None else retention_s
        self.abandon_after_s = abandon_after_s
        if max_bytes is None:
            try:
                max_bytes = min(
                    MAX_BYTES_CEILING, self._free_space(self.root) // MAX_BYTES_FREE_DIVISOR
                )
            except OSError:
                max_bytes = MAX_BYTES_CEILING
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._entries: dict[EntryKey, Entry] = {}
        self._order: list[EntryKey] = []
        self._streams: dict[str, SpoolStream] = {}
        self._bytes = 0
        self._reserved = 0
        self._seq = 0
        self._totals = {"spooled": 0, "uploaded": 0, "dropped": 0, "failed": 0, "purged": 0}
        self._closed = False
        self.resumed: list[str] = []
        self._recover()

    # ---- streams ----

    def open_stream(self, data_id: str, kind: str, info: dict[str, Any] | None = None) -> None:
        """Start spooling a new stream (creates its folder, lock and marker)."""
        path = self._stream_dir(data_id)
        with self._lock:
            if data_id in self._streams:
                return
        path.mkdir(parents=True, exist_ok=True)
        fd = _lock_dir(path)
        if fd is None:
            raise RuntimeError(f"another client is already spooling stream {data_id}")
        now = self._now()
        stream = SpoolStream(data_id, kind, path, fd, now, now, now, dict(info or {}))
        try:
            _write_atomically(path / MARKER_FILE, stream.marker(self.endpoint, False))
        except OSError as error:
            _unlock(fd)
            raise RuntimeError(f"cannot write to spool directory {path}: {error}") from None
        with self._lock:
            self._streams[data_id] = stream

    def stream(self, data_id: str) -> SpoolStream | None:
        with self._lock:
            return self._streams.get(data_id)

    def _stream_dir(self, data_id: str) -> Path:
        safe = data_id and all(c.isascii() and (c.isalnum() or c in "-_") for c in data_id)
        if not safe:
            raise RuntimeError(f"data_id {json.dumps(data_id)} cannot name a spool directory")
        return self.root / data_id

    # ---- enqueue ----

    def enqueue(
        self,
        data_id: str,
        chunk_idx: int,
        kind: str,
        metadata: dict[str, Any],
        payload: bytes | list[Any],
    ) -> str | None:
        """Write one chunk; returns None when spooled, else the reason it was dropped.

        ``payload`` is the chunk's bytes, or a sequence of buffers that together are its bytes.
        """
        payload_len = _nbytes(payload)
        with self._lock:
            stream = self._streams.get(data_id)
            if stream is None:
                raise RuntimeError(f"no spool for stream {data_id}; call initialize(...) first")
            spooled_at = self._now()
            seq = self._seq
            self._seq += 1
        meta = {
            "version": FORMAT_VERSION,
            "data_id": data_id,
            "chunk_idx": chunk_idx,
            "spooled_at_ms": spooled_at,
            "seq": seq,
            "shard_len": payload_len,
            "kind": kind,
            "metadata": metadata,
        }
        sidecar = json.dumps(meta).encode()
        need = payload_len + len(sidecar)
        entry = Entry(meta, stream.dir, need)
        with self._lock:
            if stream.closed is not None:
                return self._drop(stream, chunk_idx, f"stream was {stream.closed}")
            used = self._bytes + self._reserved
            if used + need > self.max_bytes:
                return self._drop(
                    stream,
                    chunk_idx,
                    f"spool is full ({used} of {self.max_bytes} bytes waiting to upload)",
                )
            try:
                free: int | None = self._free_space(self.root)
            except OSError:
                free = None  # an unmeasurable disk is no reason to lose data
            if free is not None:
                free = max(free - self._reserved, 0)
                if free < need + self.min_free_bytes:
                    return self._drop(
                        stream,
                        chunk_idx,
                        f"disk has {free} bytes free, and the spool leaves at least "
                        f"{self.min_free_bytes}",
                    )
            self._reserved += need
        try:
            _write_atomically(entry.payload_path, payload)
            try:
                _write_atomically(entry.sidecar_path, sidecar)
            except BaseException:
                with contextlib.suppress(OSError):
                    entry.payload_path.unlink()
                raise
        except OSError as error:
            with self._lock:
                self._reserved -= need
                return self._drop(stream, chunk_idx, f"could not write to the spool: {error}")
        with self._lock:
            self._reserved -= need
            if stream.closed is not None:
                self._remove_files(entry)
                return self._drop(stream, chunk_idx, "stream was closed")
            stream.spooled += 1
            stream.pending += 1
            stream.spooled_bytes += payload_len
            self._totals["spooled"] += 1
            self._bytes += need
            self._insert(entry)
            self._changed.notify_all()
        return None

    def _insert(self, entry: Entry) -> None:
        self._entries[entry.key] = entry
        bisect.insort(self._order, entry.key)

    def _drop(self, stream: SpoolStream, chunk_idx: int, reason: str) -> str:
        self._totals["dropped"] += 1
        stream.dropped += 1
        stream.lose(chunk_idx, f"dropped: {reason}")
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
        """The oldest entry no worker holds, marked in flight; None after ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while not stop.is_set():
                for key in self._order:
                    entry = self._entries[key]
                    if not entry.in_flight:
                        entry.in_flight = True
                        return entry
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._changed.wait(remaining)
        return None

    def release(self, entry: Entry) -> None:
        """Return a claimed entry untouched (client closing)."""
        with self._lock:
            if entry.key in self._entries:
                entry.in_flight = False
                self._changed.notify_all()

    def cancel_event(self, entry: Entry) -> threading.Event:
        with self._lock:
            stream = self._streams.get(entry.meta["data_id"])
            return stream.cancel if stream is not None else threading.Event()

    def stale(self, entry: Entry) -> bool:
        """True when the entry must not be tried again (handles expiry and abandonment)."""
        now = self._now()
        with self._lock:
            if entry.key not in self._entries:
                return True
            stream = self._streams.get(entry.meta["data_id"])
            if stream is None or stream.closed is not None:
                return True
            abandoned = (
                stream.kind == "rheed" and now - stream.last_upload_ms > self.abandon_after_s * 1000
            )
            expired = now - entry.meta["spooled_at_ms"] > self.retention_s * 1000
        if abandoned:
            self.abandon(entry.meta["data_id"])
            return True
        if expired:
            self.finish(entry, "purged", self.retention_reason())
            return True
        return False

    def finish(self, entry: Entry, fate: str, reason: str = "") -> None:
        """Remove an entry and count its fate: "uploaded", "failed" or "purged"."""
        with self._lock:
            if self._entries.pop(entry.key, None) is None:
                return
            self._order.remove(entry.key)
        if fate == "purged":
            log.info(
                "discarded chunk %d of stream %s: %s",
                entry.meta["chunk_idx"],
                entry.meta["data_id"],
                reason,
            )
        self._remove_files(entry)
        now = self._now()
        marker: tuple[Path, bytes] | None = None
        with self._lock:
            self._bytes -= entry.nbytes
            self._totals[fate] += 1
            stream = self._streams.get(entry.meta["data_id"])
            if stream is not None:
                setattr(stream, fate, getattr(stream, fate) + 1)
                stream.pending = max(stream.pending - 1, 0)
                if fate == "uploaded":
                    stream.last_upload_ms = now
                    stream.uploaded_bytes += entry.meta["shard_len"]
                    if (
                        stream.closed is None
                        and now - stream.marker_written_ms >= MARKER_REFRESH_MS
                    ):
                        stream.marker_written_ms = now
                        marker = (stream.dir / MARKER_FILE, stream.marker(self.endpoint, False))
                else:
                    stream.lose(entry.meta["chunk_idx"], reason)
            self._changed.notify_all()
        if marker is not None:
            with contextlib.suppress(OSError):
                _write_atomically(*marker)

    def open_payload(self, entry: Entry) -> BinaryIO:
        """The spooled chunk's file, open for reading (uploads stream it; nothing is read whole)."""
        return open(entry.payload_path, "rb")

    def _remove_files(self, entry: Entry) -> None:
        for path in (entry.sidecar_path, entry.payload_path):
            try:
                path.unlink()
            except FileNotFoundError:
                pass
            except OSError as error:
                log.warning("could not delete a spooled file: %s", error)

    # ---- drain, close, status ----

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
            for key in [k for k in self._order if k[2] == data_id]:
                entry = self._entries.pop(key)
                self._order.remove(key)
                self._bytes -= entry.nbytes
                stream.purged += 1
                self._totals["purged"] += 1
                stream.lose(entry.meta["chunk_idx"], f"not uploaded before the stream was {reason}")
            stream.pending = 0
            marker = stream.marker(self.endpoint, True)
            fd, stream.lock_fd = stream.lock_fd, None
            self._changed.notify_all()
        with contextlib.suppress(OSError):
            _write_atomically(stream.dir / MARKER_FILE, marker)
        _unlock(fd)
        _remove_dir(stream.dir)
        return stream.counts()

    def forget_stream(self, data_id: str) -> None:
        """Drop the record of a closed stream (its counts stay in the totals)."""
        with self._lock:
            stream = self._streams.get(data_id)
            if stream is not None and stream.closed is not None:
                del self._streams[data_id]

    def abandon(self, data_id: str) -> None:
        stream = self.stream(data_id)
        if stream is None or stream.closed is not None:
            return
        log.warning(
            "stream %s has had no confirmed upload for %s h, so the backend has closed it; "
            "discarding its %d spooled chunk(s)",
            data_id,
            _hours(self.abandon_after_s),
            stream.pending,
        )
        self.close_stream(data_id, "abandoned")

    def retention_reason(self) -> str:
        return f"not uploaded within the {_hours(self.retention_s)} h retention limit"

    def sweep(self) -> None:
        """Abandon silent RHEED streams and purge entries past retention (every 60 s)."""
        now = self._now()
        with self._lock:
            abandoned = [
                s.data_id
                for s in self._streams.values()
                if s.closed is None
                and s.kind == "rheed"
                and now - s.last_upload_ms > self.abandon_after_s * 1000
            ]
            expired = [
                e
                for e in self._entries.values()
                if not e.in_flight and now - e.meta["spooled_at_ms"] > self.retention_s * 1000
            ]
        for data_id in abandoned:
            self.abandon(data_id)
        for entry in expired:
            self.finish(entry, "purged", self.retention_reason())

    def status(self) -> dict[str, Any]:
        """The reference's ``spool_status()`` keys."""
        try:
            free: int | None = self._free_space(self.root)
        except OSError:
            free = None
        with self._lock:
            return {
                "dir": str(self.root),
                "bytes": self._bytes,
                "max_bytes": self.max_bytes,
                "min_free_bytes": self.min_free_bytes,
                "free_bytes": free,
                "chunks_pending": len(self._entries),
                **{f"chunks_{k}": v for k, v in self._totals.items()},
                "streams": {d: s.counts() for d, s in sorted(self._streams.items())},
            }

    def close(self) -> None:
        """Release every lock and wake waiters; files stay for the next client to resume."""
        with self._lock:
            self._closed = True
            streams = list(self._streams.values())
            for stream in streams:
                stream.cancel.set()
            self._changed.notify_all()
        for stream in streams:
            fd, stream.lock_fd = stream.lock_fd, None
            _unlock(fd)

    # ---- recovery ----

    def _recover(self) -> None:
        now = self._now()
        for path in sorted(self.root.iterdir()):
            if not path.is_dir():
                continue
            try:
                self._recover_stream(path, now)
            except Exception as error:
                log.warning("skipping spool directory %s: %s", path, error)

    def _recover_stream(self, path: Path, now: int) -> None:
        fd = _lock_dir(path)
        if fd is None:
            log.debug("%s belongs to a running client", path)
            return
        try:
            marker = json.loads((path / MARKER_FILE).read_bytes())
            data_id = str(marker["data_id"])
            endpoint = str(marker["endpoint"])
        except (OSError, ValueError, KeyError, TypeError):
            log.info("removing %s: it has no readable stream record", path)
            _unlock(fd)
            _remove_dir(path)
            return
        if endpoint != self.endpoint:
            _unlock(fd)  # leave it to a client of that endpoint
            return
        if marker.get("finalized"):
            _unlock(fd)
            _remove_dir(path)
            return
        kind = str(marker.get("kind", "rheed"))
        entries = self._scan(path, data_id)
        expired = [e for e in entries if now - e.meta["spooled_at_ms"] > self.retention_s * 1000]
        fresh = [e for e in entries if e not in expired]
        stream = SpoolStream(
            data_id,
            kind,
            path,
            fd,
            int(marker.get("created_at_ms", now)),
            max(int(marker.get("created_at_ms", now)), int(marker.get("last_upload_ms", now))),
            now,
            dict(marker.get("info") or {}),
            resumed=True,
        )
        stream.spooled = len(entries)
        for entry in expired:
            log.info(
                "discarded chunk %d of stream %s: %s",
                entry.meta["chunk_idx"],
                data_id,
                self.retention_reason(),
            )
            self._remove_files(entry)
            stream.purged += 1
            stream.lose(entry.meta["chunk_idx"], self.retention_reason())
        if kind == "rheed" and now - stream.last_upload_ms > self.abandon_after_s * 1000:
            if fresh:
                log.warning(
                    "stream %s has had no confirmed upload for over %s h, so the backend has "
                    "closed it; discarding its %d spooled chunk(s)",
                    data_id,
                    _hours(self.abandon_after_s),
                    len(fresh),
                )
            self._totals["spooled"] += stream.spooled
            self._totals["purged"] += stream.spooled
            _unlock(fd)
            _remove_dir(path)
            return
        if fresh:
            log.info(
                "resuming upload of %d chunk(s) of stream %s left by an earlier run",
                len(fresh),
                data_id,
            )
        with self._lock:
            for entry in fresh:
                self._seq = max(self._seq, entry.meta["seq"] + 1)
                self._bytes += entry.nbytes
                self._insert(entry)
            stream.pending = len(fresh)
            stream.spooled_bytes = sum(e.meta["shard_len"] for e in fresh)
            self._totals["spooled"] += stream.spooled
            self._totals["purged"] += stream.purged
            self._streams[data_id] = stream
            self.resumed.append(data_id)

    def _scan(self, path: Path, data_id: str) -> list[Entry]:
        """Complete entries; deletes temp files, orphan payloads and bad sidecars."""
        entries: list[Entry] = []
        payloads: list[Path] = []
        kept: set[Path] = set()
        for file in path.iterdir():
            name = file.name
            if name.endswith(".tmp"):
                with contextlib.suppress(OSError):
                    file.unlink()
            elif file.suffix.lstrip(".") in PAYLOAD_EXT.values():
                payloads.append(file)
            elif file.suffix == f".{SIDECAR_EXT}" and name != MARKER_FILE:
                try:
                    meta = json.loads(file.read_bytes())
                    valid = meta["version"] == FORMAT_VERSION and meta["data_id"] == data_id
                    entry = Entry(meta, path, 0)
                    size = entry.payload_path.stat().st_size
                    valid = valid and size == meta["shard_len"]
                except (OSError, ValueError, KeyError, TypeError):
                    valid = False
                if valid:
                    entry.nbytes = size + file.stat().st_size
                    kept.add(entry.payload_path)
                    entries.append(entry)
                else:
                    log.debug("removing incomplete entry %s", file)
                    with contextlib.suppress(OSError):
                        file.unlink()
        for payload in payloads:
            if payload not in kept:
                with contextlib.suppress(OSError):
                    payload.unlink()
        entries.sort(key=lambda e: e.key)
        return entries
