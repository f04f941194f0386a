"""On-disk frames of one RHEED stream as a dense Zarr v3 array that zarr-python 3 opens directly.

Layout: ``<data_dir>/rheed/<data_id>/frames.zarr/zarr.json`` describes ONE array of shape
(N_total, H, W) uint8 on a regular chunk grid (1, H, W), one frame per zarr chunk, codecs
[bytes(little), zstd(level 3, no checksum)], fill value 0. Frame i is the file
``frames.zarr/c/{i}/0/0``: exactly one zstd frame of H*W bytes, which is what every inner chunk of
an uploaded shard already is, so shards are split into frame files without recompressing. An
all-zero frame has no file (it reads as the fill value).

Placement (kept by storage.Storage, which owns the per-chunk offsets): chunk k starts at frame
``sum(N_j for j < k)``, where N_j is the received size of chunk j, or the stream's chunk_size for a
chunk not received yet. The array is dense because a chunk may be shorter than chunk_size anywhere
in a stream (the callback cuts chunks at acquisition pauses; any client may push N <= chunk_size),
and a grid of chunk_size slots per chunk would read back blank frames that were never captured.
When a chunk's size differs from what later, stored chunks assumed, their frame files are shifted
(``shift``) under the stream's lock. Frame files are staged outside the array and renamed into
place, so a reader never sees half a file.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zstandard

from atomscale_bluesky.shards import EMPTY_ENTRY, DecodedShard


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
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
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


@dataclass(frozen=True)
class StagedChunk:
    """One chunk's frames written to a staging folder, ready to be renamed into the array."""

    folder: Path
    files: tuple[Path | None, ...]  # per frame: its staged file, or None for an all-zero frame

    @property
    def n_frames(self) -> int:
        return len(self.files)


class FrameStore:
    """The frames.zarr array of one stream: stage, place and shift frame files; read frames."""

    def __init__(self, root: Path) -> None:
        self.root = root  # <data_dir>/rheed/<data_id>/frames.zarr
        self.staging = root.parent / "incoming"

    def frame_path(self, index: int) -> Path:
        return self.root / "c" / str(index) / "0" / "0"

    # -- writing (stage outside the stream lock; place, clear and shift under it) ----------------

    def stage(self, shard: bytes, decoded: DecodedShard) -> StagedChunk:
        """Write each non-zero frame's zstd bytes (straight from the shard) to a staging folder."""
        folder = self.staging / secrets.token_hex(8)
        folder.mkdir(parents=True)
        files: list[Path | None] = []
        try:
            for i, (offset, nbytes) in enumerate(decoded.entries):
                if offset == EMPTY_ENTRY and nbytes == EMPTY_ENTRY:
                    files.append(None)
                    continue
                path = folder / str(i)
                path.write_bytes(shard[offset : offset + nbytes])
                files.append(path)
        except BaseException:
            self.discard(StagedChunk(folder, ()))
            raise
        return StagedChunk(folder, tuple(files))

    def discard(self, staged: StagedChunk) -> None:
        shutil.rmtree(staged.folder, ignore_errors=True)

    def place(self, staged: StagedChunk, first: int) -> None:
        """Move staged frames to frames [first, first + N); an all-zero frame removes a file."""
        for i, src in enumerate(staged.files):
            dst = self.frame_path(first + i)
            if src is None:
                dst.unlink(missing_ok=True)
            else:
                dst.parent.mkdir(parents=True, exist_ok=True)
                os.replace(src, dst)
        self.discard(staged)

    def clear(self, start: int, stop: int) -> None:
        """Remove the frame files of frames [start, stop)."""
        for index in range(start, stop):
            self.frame_path(index).unlink(missing_ok=True)

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
            if src.exists():
                dst.parent.mkdir(parents=True, exist_ok=True)
                os.replace(src, dst)
            else:
                dst.unlink(missing_ok=True)
        if delta < 0:  # tidy the emptied folders past the new end
            for index in range(max(stop + delta, start), stop):
                for folder in (self.frame_path(index).parent, self.frame_path(index).parent.parent):
                    try:
                        folder.rmdir()
                    except OSError:
                        break

    def write_metadata(self, n_total: int, height: int, width: int, attrs: dict) -> None:
        doc = array_metadata(n_total, height, width, attrs)
        _atomic_write(self.root / "zarr.json", json.dumps(doc, indent=2).encode())

    # -- reading ----------------------------------------------------------------------------------

    def read_raw(self, start: int, stop: int) -> list[bytes | None]:
        """The stored zstd bytes of frames [start, stop) (None: no file, an all-zero frame)."""
        out: list[bytes | None] = []
        for index in range(start, stop):
            try:
                out.append(self.frame_path(index).read_bytes())
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
