"""On-disk frames of one RHEED stream as a dense Zarr v3 array that zarr-python 3 opens directly.

Layout: ``<data_dir>/rheed/<data_id>/frames.zarr/zarr.json`` describes ONE array of shape
(N_total, H, W) uint8 on a regular chunk grid (1, H, W), one frame per zarr chunk, codecs
[bytes(little), zstd(level 3, no checksum)], fill value 0, chunk keys with the ``.`` separator.
Frame i is the file ``frames.zarr/c.{i}.0.0``: exactly one zstd frame of H*W bytes, which is what
every inner chunk of an uploaded shard already is, so shards are split into frame files without
recompressing. An all-zero frame has no file (it reads as the fill value). The ``.`` separator
keeps every frame file in one folder: ``/`` would make two folders per frame, which costs more
CPU than writing the frame.

Placement (kept by storage.Storage, which owns the per-chunk offsets): chunk k starts at frame
``sum(N_j for j < k)``, where N_j is the received size of chunk j, or the stream's chunk_size for a
chunk not received yet. The array is dense because a chunk may be shorter than chunk_size anywhere
in a stream (the callback cuts chunks at acquisition pauses; any client may push N <= chunk_size),
and a grid of chunk_size slots per chunk would read back blank frames that were never captured.
When a chunk's size differs from what later, stored chunks assumed, their frame files are shifted
(``shift``) under the stream's lock. Frame files are staged outside the array and renamed into
place, so a reader never sees half a file. Paths are plain strings: this path runs once per frame.
Arrays written with the ``/`` separator by earlier servers are converted on open (``adopt``).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zstandard

from atomscale_bluesky.shards import EMPTY_ENTRY, ShardIndex

SEPARATOR = "."


def array_metadata(n_total: int, height: int, width: int, attrs: dict) -> dict:
    """The zarr.json document of the dense stream array: one frame per zarr chunk."""
    return {
        "zarr_format": 3,
        "node_type": "array",
        "shape": [n_total, height, width],
        "data_type": "uint8",
        "chunk_grid": {
            "name": "regular",
            "configuration": {"chunk_shape": [1, height, width]},
        },
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": SEPARATOR}},
        "fill_value": 0,
        "codecs": [
            {"name": "bytes", "configuration": {"endian": "little"}},
            {"name": "zstd", "configuration": {"level": 3, "checksum": False}},
        ],
        "attributes": attrs,
    }


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _write_file(path: str, data: memoryview) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        while data:
            data = data[os.write(fd, data) :]
    finally:
        os.close(fd)


def _move(src: str, dst: str) -> None:
    """Rename ``src`` over ``dst``, making dst's folder if it is missing (a stream's first)."""
    try:
        os.replace(src, dst)
    except FileNotFoundError:
        if not os.path.exists(src):
            raise
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        os.replace(src, dst)


def _unlink(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


@dataclass(frozen=True)
class StagedChunk:
    """One chunk's frames written as staging files, ready to be renamed into the array."""

    files: tuple[str | None, ...]  # per frame: its staged file, or None for an all-zero frame

    @property
    def n_frames(self) -> int:
        return len(self.files)


class FrameStore:
    """The frames.zarr array of one stream: stage, place and shift frame files; read frames."""

    def __init__(self, root: Path) -> None:
        self.root = root  # <data_dir>/rheed/<data_id>/frames.zarr
        self.staging = root.parent / "incoming"
        self._prefix = os.path.join(root, "c.")

    def frame_path(self, index: int) -> str:
        return f"{self._prefix}{index}.0.0"

    # -- writing (stage outside the stream lock; place, clear and shift under it) ----------------

    def stage(self, shard: bytes, decoded: ShardIndex) -> StagedChunk:
        """Write each non-zero frame's zstd bytes (straight from the shard) to a staging file."""
        self.staging.mkdir(parents=True, exist_ok=True)
        prefix = f"{self.staging}/{secrets.token_hex(8)}."
        view = memoryview(shard)
        files: list[str | None] = []
        try:
            for i, (offset, nbytes) in enumerate(decoded.entries):
                if offset == EMPTY_ENTRY and nbytes == EMPTY_ENTRY:
                    files.append(None)
                    continue
                files.append(prefix + str(i))
                _write_file(prefix + str(i), view[offset : offset + nbytes])
        except BaseException:
            self.discard(StagedChunk(tuple(files)))
            raise
        return StagedChunk(tuple(files))

    def discard(self, staged: StagedChunk) -> None:
        """Remove what is left of a chunk's staging files (none once it was placed)."""
        for path in staged.files:
            if path is not None:
                _unlink(path)

    def place(self, staged: StagedChunk, first: int) -> None:
        """Move staged frames to frames [first, first + N); an all-zero frame removes a file."""
        for i, src in enumerate(staged.files):
            dst = self.frame_path(first + i)
            if src is None:
                _unlink(dst)
            else:
                _move(src, dst)

    def clear(self, start: int, stop: int) -> None:
        """Remove the frame files of frames [start, stop)."""
        for index in range(start, stop):
            _unlink(self.frame_path(index))

    def shift(self, start: int, stop: int, delta: int) -> None:
        """Move the frame files of frames [start, stop) to [start + delta, stop + delta).

        Renames run from the end when moving up and from the start when moving down, so no file
        is overwritten before it has moved; a frame without a file clears its destination.
        """
        if delta == 0 or stop <= start:
            return
        order = range(stop - 1, start - 1, -1) if delta > 0 else range(start, stop)
        for index in order:
            src, dst = self.frame_path(index), self.frame_path(index + delta)
            if os.path.exists(src):
                _move(src, dst)
            else:
                _unlink(dst)

    def write_metadata(self, n_total: int, height: int, width: int, attrs: dict) -> None:
        doc = array_metadata(n_total, height, width, attrs)
        _atomic_write(self.root / "zarr.json", json.dumps(doc, indent=2).encode())

    def clear_staging(self) -> int:
        """Remove staging files a crash left behind (only when no upload is in flight, as when
        the server opens its data directory); returns how many there were."""
        try:
            leftovers = list(self.staging.iterdir())
        except FileNotFoundError:
            return 0
        for path in leftovers:
            _unlink(str(path))
        return len(leftovers)

    def adopt(self) -> bool:
        """Convert an array written with the ``/`` separator (frame i at ``c/{i}/0/0``) to this
        layout; True if there was one. Frame files are renamed, then the metadata is rewritten."""
        meta_path = self.root / "zarr.json"
        try:
            doc = json.loads(meta_path.read_text())
        except FileNotFoundError:
            return False
        encoding = doc.get("chunk_key_encoding", {}).get("configuration", {})
        if encoding.get("separator", "/") == SEPARATOR:
            return False
        folders = self.root / "c"
        if folders.is_dir():
            for frame in folders.iterdir():
                src = frame / "0" / "0"
                if frame.name.isdigit() and src.exists():
                    os.replace(src, self.frame_path(int(frame.name)))
            shutil.rmtree(folders)
        n_total, height, width = doc["shape"]
        self.write_metadata(n_total, height, width, doc.get("attributes", {}))
        return True

    # -- reading ----------------------------------------------------------------------------------

    def read_raw(self, start: int, stop: int) -> list[bytes | None]:
        """The stored zstd bytes of frames [start, stop) (None: no file, an all-zero frame)."""
        out: list[bytes | None] = []
        for index in range(start, stop):
            try:
                with open(self.frame_path(index), "rb") as fh:
                    out.append(fh.read())
            except FileNotFoundError:
                out.append(None)
        return out

    @staticmethod
    def decode(raw: Sequence[bytes | None], height: int, width: int) -> np.ndarray:
        """Decompress frame files read by ``read_raw`` into an (n, H, W) uint8 array."""
        out = np.zeros((len(raw), height, width), dtype=np.uint8)
        decompressor = zstandard.ZstdDecompressor()
        for i, data in enumerate(raw):
            if data is not None:
                frame = decompressor.decompress(data, max_output_size=height * width)
                out[i] = np.frombuffer(frame, dtype=np.uint8).reshape(height, width)
        return out
