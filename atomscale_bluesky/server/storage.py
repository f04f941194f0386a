"""Persistent state of the local server: SQLite for records, one Zarr array per RHEED stream.

``<data_dir>/atomscale.sqlite`` holds streams (RHEED and tool-state) with their counters, samples,
tags, links, project tracking, per-chunk capture times, and every time-series point;
``<data_dir>/rheed/<data_id>/frames.zarr`` holds the frames as one dense array (see frame_store
for the layout and the placement rule; ``rheed_chunks.frame_offset`` is each chunk's first frame).
All methods are synchronous and thread-safe (one SQLite connection behind a lock, one lock per
stream around frame placement, shifting and reading); the ASGI layer calls them from worker
threads so the event loop stays responsive.
Raises StorageError subclasses that the HTTP layer maps to 4xx answers.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from atomscale_bluesky.server.frame_store import Frame, FrameStore, shard_frames
from atomscale_bluesky.shards import ShardError, check_shard, decode_shard, inner_chunks

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS streams (
    data_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,                 -- 'rheed' or 'timeseries'
    name TEXT,
    fps REAL, rotations_per_min REAL, rotational_period REAL,
    project_id TEXT, azimuth_label TEXT,
    points_per_chunk INTEGER, synth_source_id INTEGER, processed_data_id TEXT,
    status TEXT NOT NULL DEFAULT 'active',
    created_at REAL NOT NULL, finalized_at REAL,
    chunk_size INTEGER, height INTEGER, width INTEGER,
    chunks_received INTEGER NOT NULL DEFAULT 0,
    bytes_received INTEGER NOT NULL DEFAULT 0,
    duplicates INTEGER NOT NULL DEFAULT 0,
    rejected INTEGER NOT NULL DEFAULT 0,
    late_chunks INTEGER NOT NULL DEFAULT 0,
    last_activity REAL
);
CREATE TABLE IF NOT EXISTS rheed_chunks (
    data_id TEXT NOT NULL, chunk_idx INTEGER NOT NULL,
    n_frames INTEGER NOT NULL, height INTEGER NOT NULL, width INTEGER NOT NULL,
    start_unix_ms_utc INTEGER, end_unix_ms_utc INTEGER,
    clock_offset_ms INTEGER, clock_uncertainty_ms REAL,
    metadata TEXT NOT NULL, nbytes INTEGER NOT NULL, received_at REAL NOT NULL,
    uploads INTEGER NOT NULL DEFAULT 1,
    frame_offset INTEGER NOT NULL DEFAULT 0,  -- first frame of the chunk in the dense array
    PRIMARY KEY (data_id, chunk_idx)
);
CREATE TABLE IF NOT EXISTS samples (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, name_key TEXT NOT NULL UNIQUE, created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS tags (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, name_key TEXT NOT NULL UNIQUE, created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS sample_links (
    data_id TEXT NOT NULL, sample_id TEXT NOT NULL, PRIMARY KEY (data_id, sample_id)
);
CREATE TABLE IF NOT EXISTS tag_links (
    data_id TEXT NOT NULL, tag_id TEXT NOT NULL, PRIMARY KEY (data_id, tag_id)
);
CREATE TABLE IF NOT EXISTS project_tracking (
    project_id TEXT NOT NULL, sample_id TEXT NOT NULL, active INTEGER NOT NULL,
    updated_at REAL NOT NULL, PRIMARY KEY (project_id, sample_id)
);
CREATE TABLE IF NOT EXISTS points (
    data_id TEXT NOT NULL, channel TEXT NOT NULL, chunk_index INTEGER NOT NULL, seq INTEGER NOT NULL,
    timestamp REAL NOT NULL, value REAL, units TEXT,
    PRIMARY KEY (data_id, channel, chunk_index, seq)
);
"""


class StorageError(Exception):
    """A request that cannot be applied; ``status`` is the HTTP status the server answers with."""

    status = 400

    def __init__(self, message: str, *, data_id: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.data_id = data_id


class NotFound(StorageError):
    status = 404


class Conflict(StorageError):
    status = 409


class BadShard(StorageError):
    status = 400


class StaleStream(Conflict):
    """The backend closed the stream as ``stream_error`` after too long without data."""


@dataclass(frozen=True)
class ChunkGrant:
    """What one presigned URL allows: one shard key of one stream, with its presign metadata."""

    data_id: str
    chunk_idx: int
    dims: tuple[int, int, int]
    chunk_size: int
    start_ms: int | None
    end_ms: int | None
    clock_offset_ms: int | None
    clock_uncertainty_ms: float | None
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ChunkResult:
    """Outcome of storing one shard."""

    data_id: str
    chunk_idx: int
    n_frames: int
    duplicate: bool
    late: bool
    n_total: int


DEFAULT_STREAM_IDLE_S = 2 * 3600.0  # the backend closes a RHEED stream silent this long


def name_key(name: str) -> str:
    """Matching key for sample and tag names: trimmed, case-folded (ASCII case like the client)."""
    return name.strip().lower()


def _run_name(name: str | None) -> str:
    """A stream name without its trailing ``(...)`` part: the run it belongs to."""
    text = (name or "").strip()
    return text.rsplit(" (", 1)[0] if text.endswith(")") else text


def _finite_or_none(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


class Storage:
    """All server state under one data directory."""

    def __init__(
        self,
        data_dir: Path,
        *,
        now: Callable[[], float] = time.time,
        stream_idle_s: float = DEFAULT_STREAM_IDLE_S,
    ) -> None:
        self._now = now
        self.stream_idle_s = stream_idle_s
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / "rheed").mkdir(exist_ok=True)
        self._db = sqlite3.connect(
            self.data_dir / "atomscale.sqlite", check_same_thread=False, isolation_level=None
        )
        self._db.row_factory = sqlite3.Row
        self._db_lock = threading.RLock()
        self._stream_locks: dict[str, threading.Lock] = {}
        self._chunk_listeners: list[Callable[[ChunkGrant, ChunkResult], None]] = []
        self._locks_guard = threading.Lock()
        with self._db_lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(SCHEMA)
            columns = {r[1] for r in self._db.execute("PRAGMA table_info(rheed_chunks)")}
            if "frame_offset" not in columns:
                self._db.execute(
                    "ALTER TABLE rheed_chunks ADD COLUMN frame_offset INTEGER NOT NULL DEFAULT 0"
                )
                self._migrate_stacked()
            self._open_arrays()

    def close(self) -> None:
        with self._db_lock:
            self._db.close()

    # -- plumbing ---------------------------------------------------------------------------------

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One transaction under the connection lock."""
        with self._db_lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _query(self, sql: str, args: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._db_lock:
            return self._db.execute(sql, args).fetchall()

    def _stream_lock(self, data_id: str) -> threading.Lock:
        with self._locks_guard:
            return self._stream_locks.setdefault(data_id, threading.Lock())

    def _migrate_stacked(self) -> None:
        """Rewrite streams stored by the older stacked layout (one shard of chunk_size slots per
        chunk at ``c/k/0/0``) into the dense layout, so an existing data directory keeps working."""
        streams = self._db.execute(
            "SELECT data_id, chunk_size, height, width FROM streams "
            "WHERE kind = 'rheed' AND chunk_size IS NOT NULL"
        ).fetchall()
        for stream in streams:
            data_id, cs = stream["data_id"], int(stream["chunk_size"])
            dims = (cs, int(stream["height"]), int(stream["width"]))
            store = self.frame_store(data_id, *dims)
            old = store.root / "c.stacked"
            if (store.root / "c").exists():
                os.replace(store.root / "c", old)
            chunks = self._db.execute(
                "SELECT chunk_idx, n_frames FROM rheed_chunks WHERE data_id = ? ORDER BY chunk_idx",
                (data_id,),
            ).fetchall()
            end, last = 0, -1
            for chunk in chunks:
                k, n = int(chunk["chunk_idx"]), int(chunk["n_frames"])
                first = end + (k - last - 1) * cs
                path = old / str(k) / "0" / "0"
                if path.exists():  # a shard lost from disk keeps its place and reads as zeros
                    shard = path.read_bytes()
                    store.write(first, inner_chunks(shard, decode_shard(shard, dims).entries[:n]))
                self._db.execute(
                    "UPDATE rheed_chunks SET frame_offset = ? WHERE data_id = ? AND chunk_idx = ?",
                    (first, data_id, k),
                )
                end, last = first + n, k
            store.write_metadata(end, dims[1], dims[2], {"data_id": data_id, "chunk_size": cs,
                                                         "layout": "dense"})  # fmt: skip
            shutil.rmtree(old, ignore_errors=True)

    def _open_arrays(self) -> None:
        """Convert stream arrays stored one frame per file by earlier servers to shards
        (frame_store.adopt) and remove the staging files of uploads a crash interrupted."""
        rows = self._db.execute(
            "SELECT data_id, chunk_size, height, width FROM streams WHERE kind = 'rheed' "
            "AND chunk_size IS NOT NULL"
        ).fetchall()
        for row in rows:
            store = self.frame_store(row["data_id"], row["chunk_size"], row["height"], row["width"])
            if store.adopt():
                log.info("converted stream %s to one file per shard", row["data_id"])
            removed = store.clear_staging()
            if removed:
                log.info(
                    "removed %d staging file(s) of interrupted uploads to stream %s",
                    removed, row["data_id"],
                )  # fmt: skip

    def frame_store(self, data_id: str, chunk_size: int, height: int, width: int) -> FrameStore:
        """The frame array of a stream of this chunk_size and frame shape."""
        root = self.data_dir / "rheed" / data_id / "frames.zarr"
        return FrameStore(root, shard_frames(int(chunk_size), int(height), int(width)))

    def stream_row(self, data_id: str, kind: str | None = None) -> sqlite3.Row:
        rows = self._query("SELECT * FROM streams WHERE data_id = ?", (data_id,))
        if not rows or (kind is not None and rows[0]["kind"] != kind):
            what = {"rheed": "RHEED stream", "timeseries": "tool-state stream"}.get(
                kind or "", "stream"
            )
            raise NotFound(f"unknown {what} {data_id!r}")
        return rows[0]

    def count_rejected(self, data_id: str) -> None:
        """Count a refused request against a known stream (unknown ids are ignored)."""
        with self._tx() as db:
            db.execute(
                "UPDATE streams SET rejected = rejected + 1, last_activity = ? WHERE data_id = ?",
                (self._now(), data_id),
            )

    # -- samples, tags, links ---------------------------------------------------------------------

    def list_samples(self) -> list[dict[str, Any]]:
        rows = self._query("SELECT id, name, created_at FROM samples ORDER BY created_at")
        return [dict(r) for r in rows]

    def create_sample(self, name: str) -> tuple[str, bool]:
        """Create a sample; returns (id, created). An existing name (trimmed, any case) is reused."""
        return self._create_named("samples", name)

    def list_tags(self) -> list[dict[str, Any]]:
        rows = self._query("SELECT id, name, created_at FROM tags ORDER BY created_at")
        return [dict(r) for r in rows]

    def create_tag(self, name: str) -> tuple[str, bool]:
        return self._create_named("tags", name)

    def _create_named(self, table: str, name: str) -> tuple[str, bool]:
        clean = name.strip()
        if not clean:
            raise StorageError("name must not be empty")
        with self._tx() as db:
            row = db.execute(
                f"SELECT id FROM {table} WHERE name_key = ?", (name_key(clean),)
            ).fetchone()
            if row is not None:
                return str(row["id"]), False
            new_id = str(uuid.uuid4())
            db.execute(
                f"INSERT INTO {table} (id, name, name_key, created_at) VALUES (?, ?, ?, ?)",
                (new_id, clean, name_key(clean), self._now()),
            )
            return new_id, True

    def _require(self, db: sqlite3.Connection, table: str, key: str, ids: Sequence[str]) -> None:
        for one in ids:
            if db.execute(f"SELECT 1 FROM {table} WHERE {key} = ?", (one,)).fetchone() is None:
                noun = {"samples": "physical sample", "tags": "tag", "streams": "data item"}[table]
                raise NotFound(f"unknown {noun} {one!r}")

    def link_sample(self, data_ids: Sequence[str], sample_id: str) -> None:
        with self._tx() as db:
            self._require(db, "samples", "id", [sample_id])
            self._require(db, "streams", "data_id", data_ids)
            for data_id in data_ids:
                db.execute("DELETE FROM sample_links WHERE data_id = ?", (data_id,))
                db.execute(
                    "INSERT INTO sample_links (data_id, sample_id) VALUES (?, ?)",
                    (data_id, sample_id),
                )

    def attach_tags(self, data_ids: Sequence[str], tag_ids: Sequence[str]) -> None:
        with self._tx() as db:
            self._require(db, "tags", "id", tag_ids)
            self._require(db, "streams", "data_id", data_ids)
            for data_id in data_ids:
                for tag_id in tag_ids:
                    db.execute(
                        "INSERT OR IGNORE INTO tag_links (data_id, tag_id) VALUES (?, ?)",
                        (data_id, tag_id),
                    )

    def track_sample(self, project_id: str, sample_id: str, set_active: bool) -> None:
        with self._tx() as db:
            self._require(db, "samples", "id", [sample_id])
            if set_active:
                db.execute(
                    "UPDATE project_tracking SET active = 0 WHERE project_id = ?", (project_id,)
                )
            db.execute(
                "INSERT INTO project_tracking (project_id, sample_id, active, updated_at) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (project_id, sample_id) DO UPDATE SET "
                "active = MAX(active, excluded.active), updated_at = excluded.updated_at",
                (project_id, sample_id, int(set_active), self._now()),
            )

    def projects(self) -> list[dict[str, Any]]:
        rows = self._query(
            "SELECT project_id, sample_id, active FROM project_tracking ORDER BY updated_at"
        )
        out: dict[str, dict[str, Any]] = {}
        for r in rows:
            entry = out.setdefault(
                r["project_id"],
                {"project_id": r["project_id"], "tracking_samples": [], "active_sample": None},
            )
            entry["tracking_samples"].append(r["sample_id"])
            if r["active"]:
                entry["active_sample"] = r["sample_id"]
        return list(out.values())

    # -- streams ----------------------------------------------------------------------------------

    def create_rheed_stream(
        self,
        name: str,
        fps: float,
        rotations_per_min: float,
        rotational_period: float | None,
        project_id: str | None,
        azimuth_label: str | None,
    ) -> str:
        data_id = str(uuid.uuid4())
        now = self._now()
        with self._tx() as db:
            db.execute(
                "INSERT INTO streams (data_id, kind, name, fps, rotations_per_min, "
                "rotational_period, project_id, azimuth_label, created_at, last_activity) "
                "VALUES (?, 'rheed', ?, ?, ?, ?, ?, ?, ?, ?)",
                (data_id, name, fps, rotations_per_min, rotational_period, project_id,
                 azimuth_label, now, now),
            )  # fmt: skip
        return data_id

    def create_timeseries_stream(
        self,
        name: str | None,
        synth_source_id: int | None,
        points_per_chunk: int,
        project_id: str | None,
    ) -> tuple[str, str]:
        data_id, processed = str(uuid.uuid4()), str(uuid.uuid4())
        now = self._now()
        with self._tx() as db:
            db.execute(
                "INSERT INTO streams (data_id, kind, name, points_per_chunk, synth_source_id, "
                "processed_data_id, project_id, created_at, last_activity) "
                "VALUES (?, 'timeseries', ?, ?, ?, ?, ?, ?, ?)",
                (data_id, name, points_per_chunk, synth_source_id, processed, project_id, now, now),
            )
        return data_id, processed

    def finalize_stream(self, data_id: str, kind: str) -> dict[str, Any]:
        """Mark a stream finalized (repeat calls are harmless) and return its summary."""
        self.stream_row(data_id, kind)
        now = self._now()
        with self._tx() as db:
            db.execute(
                "UPDATE streams SET status = 'finalized', finalized_at = COALESCE(finalized_at, ?), "
                "last_activity = ? WHERE data_id = ?",
                (now, now, data_id),
            )
        return self.stream_summary(data_id)

    # -- RHEED chunks -----------------------------------------------------------------------------

    def check_grant(self, grant: ChunkGrant) -> None:
        """Refuse a presign early when the chunk cannot fit the stream (shape or chunk_size), or
        when the stream was closed for silence."""
        row = self.stream_row(grant.data_id, "rheed")
        self._check_not_stale(row)
        n, h, w = grant.dims
        if n > grant.chunk_size:
            raise StorageError(
                f"dims N={n} exceeds chunk_size {grant.chunk_size}: a chunk may hold at most "
                "chunk_size frames",
                data_id=grant.data_id,
            )
        self._check_shape(row, grant)

    def _check_not_stale(self, row: sqlite3.Row) -> None:
        """A RHEED stream with no data for ``stream_idle_s`` is closed as ``stream_error``."""
        status = row["status"]
        if status == "active":
            silent_s = self._now() - (row["last_activity"] or row["created_at"])
            if silent_s <= self.stream_idle_s:
                return
            with self._tx() as db:
                db.execute(
                    "UPDATE streams SET status = 'stream_error' WHERE data_id = ? AND "
                    "status = 'active'",
                    (row["data_id"],),
                )
            status = "stream_error"
        if status == "stream_error":
            raise StaleStream(
                f"stream_error: stream {row['data_id']} had no data for over "
                f"{self.stream_idle_s / 3600:g} h and was closed; start a new stream",
                data_id=row["data_id"],
            )

    @staticmethod
    def _check_shape(row: sqlite3.Row, grant: ChunkGrant) -> None:
        _, h, w = grant.dims
        if row["height"] is not None and (row["height"], row["width"]) != (h, w):
            raise Conflict(
                f"frame shape {h}x{w} differs from this stream's {row['height']}x{row['width']} "
                "(set by its first chunk); start a new stream for a new shape",
                data_id=grant.data_id,
            )
        if row["chunk_size"] is not None and row["chunk_size"] != grant.chunk_size:
            raise Conflict(
                f"chunk_size {grant.chunk_size} differs from this stream's {row['chunk_size']}",
                data_id=grant.data_id,
            )

    def store_chunk(self, grant: ChunkGrant, body: bytes) -> ChunkResult:
        """Verify ``body`` against the grant's dims and store it as chunk ``grant.chunk_idx``.

        Nothing is written unless the shard is well formed (``check_shard``) and fits the
        stream. A repeated chunk overwrites the earlier one (counted as a duplicate). The frames
        are written into the stream's shards under the stream lock, with the later chunks shifted
        when this chunk's size differs from what they assumed. Nothing is decompressed here:
        readers, the analysis among them, decompress what they read.
        """
        try:
            index = check_shard(body, grant.dims)
        except ShardError as exc:
            raise BadShard(
                f"shard does not decode with dims {grant.dims}: {exc}", data_id=grant.data_id
            ) from exc
        if grant.dims[0] > grant.chunk_size:
            raise BadShard(
                f"dims N={grant.dims[0]} exceeds chunk_size {grant.chunk_size}",
                data_id=grant.data_id,
            )
        store = self.frame_store(grant.data_id, grant.chunk_size, *grant.dims[1:])
        with self._stream_lock(grant.data_id):
            result = self._place_chunk(grant, store, inner_chunks(body, index.entries), len(body))
        for listener in self._chunk_listeners:
            listener(grant, result)
        return result

    def add_chunk_listener(self, listener: Callable[[ChunkGrant, ChunkResult], None]) -> None:
        """Call ``listener(grant, result)`` after each stored chunk (it must not block)."""
        self._chunk_listeners.append(listener)

    def read_chunk(
        self, data_id: str, chunk_idx: int, reuse: np.ndarray | None = None
    ) -> np.ndarray:
        """The frames of one stored chunk, (N, H, W) uint8: decoded into the start of ``reuse``
        when it is an array of that frame shape with room for them (a view of it), else new."""
        with self._stream_lock(data_id):
            row = self.stream_row(data_id, "rheed")
            chunk = self._chunk_row(data_id, chunk_idx)
            if chunk is None:
                raise NotFound(f"stream {data_id!r} has no chunk {chunk_idx}")
            store = self.frame_store(data_id, row["chunk_size"], row["height"], row["width"])
            first = int(chunk["frame_offset"])
            raw = store.read_raw(first, first + int(chunk["n_frames"]))
        return FrameStore.decode(raw, row["height"], row["width"], reuse)

    def related_timeseries(self, data_id: str) -> list[str]:
        """Tool-state streams of the same physical sample, else of the same project, else of the
        same run (the callback names a run's streams ``<run name> (<what>)``)."""
        row = self.stream_row(data_id)
        for sql, args in (
            (
                "SELECT s.data_id FROM streams s JOIN sample_links a ON a.data_id = s.data_id "
                "JOIN sample_links b ON b.sample_id = a.sample_id WHERE b.data_id = ? AND "
                "s.kind = 'timeseries' ORDER BY s.created_at",
                (data_id,),
            ),
            (
                "SELECT data_id FROM streams WHERE kind = 'timeseries' AND project_id = ? "
                "ORDER BY created_at",
                (row["project_id"],),
            ),
        ):
            found = [r[0] for r in self._query(sql, args)]
            if found:
                return found
        base = _run_name(row["name"])
        rows = self._query(
            "SELECT data_id, name FROM streams WHERE kind = 'timeseries' ORDER BY created_at"
        )
        return [r["data_id"] for r in rows if base and _run_name(r["name"]) == base]

    def _place_chunk(
        self, grant: ChunkGrant, store: FrameStore, frames: Sequence[Frame], nbytes: int
    ) -> ChunkResult:
        """Under the stream lock: write a chunk's frames at its offset, shifting later chunks."""
        n, h, w = grant.dims
        k, cs = grant.chunk_idx, grant.chunk_size
        row = self.stream_row(grant.data_id, "rheed")
        self._check_shape(row, grant)
        prev = self._chunk_row(grant.data_id, k)
        first = self._chunk_offset(grant.data_id, k, cs)
        assumed = cs if prev is None else int(prev["n_frames"])
        delta = n - assumed
        if delta < 0 and prev is not None:
            store.clear(first + n, first + assumed)  # the re-upload's old, longer tail
        if delta != 0:
            (lo, hi) = self._query(
                "SELECT MIN(frame_offset), MAX(frame_offset + n_frames) FROM rheed_chunks "
                "WHERE data_id = ? AND chunk_idx > ?",
                (grant.data_id, k),
            )[0]
            if lo is not None:
                store.shift(int(lo), int(hi), delta)
        store.write(first, frames)
        now = self._now()
        late = row["status"] == "finalized"
        with self._tx() as db:
            db.execute(
                "UPDATE rheed_chunks SET frame_offset = frame_offset + ? "
                "WHERE data_id = ? AND chunk_idx > ?",
                (delta, grant.data_id, k),
            )
            db.execute(
                "INSERT OR REPLACE INTO rheed_chunks (data_id, chunk_idx, n_frames, height, "
                "width, start_unix_ms_utc, end_unix_ms_utc, clock_offset_ms, "
                "clock_uncertainty_ms, metadata, nbytes, received_at, uploads, frame_offset) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (grant.data_id, k, n, h, w, grant.start_ms, grant.end_ms, grant.clock_offset_ms,
                 grant.clock_uncertainty_ms, json.dumps(dict(grant.metadata)), nbytes, now,
                 1 if prev is None else prev["uploads"] + 1, first),
            )  # fmt: skip
            db.execute(
                "UPDATE streams SET chunk_size = ?, height = ?, width = ?, "
                "chunks_received = chunks_received + 1, bytes_received = bytes_received + ?, "
                "duplicates = duplicates + ?, late_chunks = late_chunks + ?, last_activity = ? "
                "WHERE data_id = ?",
                (cs, h, w, nbytes, int(prev is not None), int(late), now, grant.data_id),
            )
        n_total = self._n_total(grant.data_id)
        attrs = {"data_id": grant.data_id, "chunk_size": cs, "layout": "dense"}
        store.write_metadata(n_total, h, w, attrs)
        return ChunkResult(grant.data_id, k, n, prev is not None, late, n_total)

    def _chunk_row(self, data_id: str, chunk_idx: int) -> sqlite3.Row | None:
        rows = self._query(
            "SELECT n_frames, uploads, frame_offset FROM rheed_chunks "
            "WHERE data_id = ? AND chunk_idx = ?",
            (data_id, chunk_idx),
        )
        return rows[0] if rows else None

    def _chunk_offset(self, data_id: str, chunk_idx: int, chunk_size: int) -> int:
        """First frame of chunk ``chunk_idx``: received sizes before it, chunk_size for the rest."""
        (count, frames) = self._query(
            "SELECT COUNT(*), COALESCE(SUM(n_frames), 0) FROM rheed_chunks "
            "WHERE data_id = ? AND chunk_idx < ?",
            (data_id, chunk_idx),
        )[0]
        return int(frames) + (chunk_idx - int(count)) * chunk_size

    def _n_total(self, data_id: str) -> int:
        """Frames in the dense array: the end of the highest received chunk (holes included)."""
        rows = self._query(
            "SELECT frame_offset + n_frames FROM rheed_chunks WHERE data_id = ? "
            "ORDER BY chunk_idx DESC LIMIT 1",
            (data_id,),
        )
        return int(rows[0][0]) if rows else 0

    def missing_chunks(self, data_id: str) -> list[int]:
        """Chunk indices below the highest received one that were never received (read as 0)."""
        received = [
            int(r[0])
            for r in self._query(
                "SELECT chunk_idx FROM rheed_chunks WHERE data_id = ? ORDER BY chunk_idx",
                (data_id,),
            )
        ]
        if not received:
            return []
        have = set(received)
        return [i for i in range(received[-1]) if i not in have]

    def chunk_times(self, data_id: str) -> list[dict[str, Any]]:
        self.stream_row(data_id, "rheed")
        rows = self._query(
            "SELECT * FROM rheed_chunks WHERE data_id = ? ORDER BY chunk_idx", (data_id,)
        )
        return [
            {
                "idx": r["chunk_idx"],
                "n_frames": r["n_frames"],
                "offset": r["frame_offset"],  # first frame of the chunk in the stream's array
                "dims": [r["n_frames"], r["height"], r["width"]],
                "start_unix_ms_utc": r["start_unix_ms_utc"],
                "end_unix_ms_utc": r["end_unix_ms_utc"],
                "clock_offset_ms": r["clock_offset_ms"],
                "clock_uncertainty_ms": r["clock_uncertainty_ms"],
                "uploads": r["uploads"],
                "nbytes": r["nbytes"],
                "received_at": r["received_at"],  # server time (Unix s) the chunk was stored
                "metadata": json.loads(r["metadata"]),
            }
            for r in rows
        ]

    def n_frames(self, row: sqlite3.Row) -> int:
        return self._n_total(row["data_id"])

    def read_frames(self, data_id: str, start: int | None, stop: int | None) -> np.ndarray:
        """Frames [start, stop) of a stream (Python slice rules for None/negatives; step 1).

        Shards are read under the stream lock (so a shift is never seen half done) and
        decompressed after it is released.
        """
        with self._stream_lock(data_id):
            row = self.stream_row(data_id, "rheed")
            if row["chunk_size"] is None:
                return np.zeros((0, 0, 0), dtype=np.uint8)
            store = self.frame_store(data_id, row["chunk_size"], row["height"], row["width"])
            lo, hi, _ = slice(start, stop).indices(self._n_total(data_id))
            raw = store.read_raw(lo, max(hi, lo))
        return FrameStore.decode(raw, row["height"], row["width"])

    # -- time series ------------------------------------------------------------------------------

    def store_points(
        self,
        data_id: str,
        chunk_index: int,
        channels: Mapping[str, tuple[Sequence[float], Sequence[float | None], str | None]],
    ) -> int:
        """Store one chunk of points per channel, replacing an earlier copy of the same chunk."""
        row = self.stream_row(data_id, "timeseries")
        now = self._now()
        stored = 0
        duplicate = False
        with self._tx() as db:
            for channel, (timestamps, values, units) in channels.items():
                cur = db.execute(
                    "DELETE FROM points WHERE data_id = ? AND channel = ? AND chunk_index = ?",
                    (data_id, channel, chunk_index),
                )
                duplicate = duplicate or cur.rowcount > 0
                db.executemany(
                    "INSERT INTO points (data_id, channel, chunk_index, seq, timestamp, value, "
                    "units) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [
                        (data_id, channel, chunk_index, i, t, _finite_or_none(v), units)
                        for i, (t, v) in enumerate(zip(timestamps, values, strict=True))
                    ],
                )
                stored += len(timestamps)
            db.execute(
                "UPDATE streams SET chunks_received = chunks_received + 1, "
                "duplicates = duplicates + ?, late_chunks = late_chunks + ?, last_activity = ? "
                "WHERE data_id = ?",
                (int(duplicate), int(row["status"] == "finalized"), now, data_id),
            )
        return stored

    def channels(self, data_id: str) -> dict[str, dict[str, Any]]:
        rows = self._query(
            "SELECT channel, COUNT(*) AS n, MIN(timestamp) AS t0, MAX(timestamp) AS t1, "
            "(SELECT p2.units FROM points p2 WHERE p2.data_id = p.data_id AND p2.channel = p.channel "
            " AND p2.units IS NOT NULL ORDER BY chunk_index DESC, seq DESC LIMIT 1) AS units "
            "FROM points p WHERE data_id = ? GROUP BY channel ORDER BY channel",
            (data_id,),
        )
        return {
            r["channel"]: {"units": r["units"], "count": r["n"], "first": r["t0"], "last": r["t1"]}
            for r in rows
        }

    def points(self, data_id: str, channel: str) -> dict[str, Any]:
        self.stream_row(data_id, "timeseries")
        rows = self._query(
            "SELECT chunk_index, timestamp, value, units FROM points WHERE data_id = ? AND "
            "channel = ? ORDER BY chunk_index, seq",
            (data_id, channel),
        )
        if not rows:
            raise NotFound(f"stream {data_id!r} has no channel {channel!r}")
        units = [r["units"] for r in rows if r["units"] is not None]
        return {
            "data_id": data_id,
            "channel": channel,
            "units": units[-1] if units else None,
            "timestamps": [r["timestamp"] for r in rows],
            "values": [r["value"] for r in rows],
            "chunk_indices": [r["chunk_index"] for r in rows],
        }

    def points_after(self, data_id: str, after: int = 0) -> list[sqlite3.Row]:
        """Points (rowid, channel, timestamp, value) of a tool-state stream stored after the
        point with rowid ``after`` (0: all of them), for a reader that follows a stream. Rowids
        only grow while no point of the stream is replaced (see ``points_version``)."""
        columns = "SELECT rowid, channel, timestamp, value FROM points"
        if after <= 0:
            return self._query(f"{columns} WHERE data_id = ?", (data_id,))
        # a rowid range scan: only what was stored since (``+`` keeps the index out of it)
        return self._query(f"{columns} WHERE rowid > ? AND +data_id = ?", (after, data_id))

    def points_version(self, data_ids: Sequence[str]) -> dict[str, tuple[int, int]]:
        """(chunks stored, chunks that replaced stored points) per tool-state stream: the
        first changes with every stored chunk, the second when points were replaced."""
        rows = self._query(
            "SELECT data_id, chunks_received, duplicates FROM streams WHERE data_id IN "
            f"({', '.join('?' * len(data_ids))})",
            tuple(data_ids),
        )
        return {r["data_id"]: (r["chunks_received"], r["duplicates"]) for r in rows}

    # -- summaries for the read API ---------------------------------------------------------------

    def _links(self, data_id: str) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        sample = self._query(
            "SELECT s.id, s.name FROM sample_links l JOIN samples s ON s.id = l.sample_id "
            "WHERE l.data_id = ?",
            (data_id,),
        )
        tags = self._query(
            "SELECT t.id, t.name FROM tag_links l JOIN tags t ON t.id = l.tag_id "
            "WHERE l.data_id = ? ORDER BY t.created_at",
            (data_id,),
        )
        return (dict(sample[0]) if sample else None), [dict(t) for t in tags]

    def stream_summary(self, data_id: str) -> dict[str, Any]:
        row = self.stream_row(data_id)
        sample, tags = self._links(data_id)
        out: dict[str, Any] = {
            "data_id": data_id,
            "kind": row["kind"],
            "name": row["name"],
            "status": row["status"],
            "created_at": row["created_at"],
            "finalized_at": row["finalized_at"],
            "project_id": row["project_id"],
            "sample": sample,
            "tags": tags,
            "counters": {
                "chunks_received": row["chunks_received"],
                "bytes_received": row["bytes_received"],
                "duplicates": row["duplicates"],
                "rejected": row["rejected"],
                "late_chunks": row["late_chunks"],
                "last_activity": row["last_activity"],
            },
        }
        if row["kind"] == "rheed":
            n_total = self.n_frames(row)
            (stored,) = self._query(
                "SELECT COALESCE(SUM(n_frames), 0) FROM rheed_chunks WHERE data_id = ?", (data_id,)
            )[0]
            out.update(
                fps=row["fps"],
                rotations_per_min=row["rotations_per_min"],
                rotational_period=row["rotational_period"],
                azimuth_label=row["azimuth_label"],
                chunk_size=row["chunk_size"],
                height=row["height"],
                width=row["width"],
                n_frames=n_total,
                missing_chunks=self.missing_chunks(data_id),
            )
            out["counters"]["frames_stored"] = int(stored)
        else:
            channels = self.channels(data_id)
            out.update(
                points_per_chunk=row["points_per_chunk"],
                synth_source_id=row["synth_source_id"],
                processed_data_id=row["processed_data_id"],
                channels=channels,
            )
            out["counters"]["points_stored"] = sum(c["count"] for c in channels.values())
        return out

    def list_streams(self) -> list[dict[str, Any]]:
        ids = [r["data_id"] for r in self._query("SELECT data_id FROM streams ORDER BY created_at")]
        return [self.stream_summary(i) for i in ids]
