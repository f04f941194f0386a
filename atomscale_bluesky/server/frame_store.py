"""On-disk frames of one RHEED stream as a dense, sharded Zarr v3 array zarr-python 3 opens directly.

Layout: ``<data_dir>/rheed/<data_id>/frames.zarr/zarr.json`` describes ONE array of shape
(N_total, H, W) uint8 on a regular grid of shards of (S, H, W), S frames being about 16 MB raw
and at most the stream's chunk_size (``shard_frames``), with chunk keys using the ``.`` separator. Shard j is the file ``frames.zarr/c.{j}.0.0`` and holds
frames [j*S, (j+1)*S) as inner chunks of one frame, codecs [bytes(little), zstd(level 3, no
checksum)], with the index (S little-endian (offset, nbytes) uint64 pairs, then its CRC32C) at the
end: the byte layout of an uploaded shard, so a frame's zstd bytes are copied from the upload
without recompressing. An all-zero frame is absent from its shard (it reads as the fill value 0),
and a shard of only such frames has no file. One file per shard, not per frame: creating a file
costs more CPU than writing a frame into one.

Placement (kept by storage.Storage, which owns the per-chunk offsets): chunk k starts at frame
``sum(N_j for j < k)``, where N_j is the received size of chunk j, or the stream's chunk_size for a
chunk not received yet. The array is dense because a chunk may be shorter than chunk_size anywhere
in a stream (the callback cuts chunks at acquisition pauses; any client may push N <= chunk_size),
and a grid of chunk_size slots per chunk would read back blank frames that were never captured.
So a chunk's first and last shards are usually shared with its neighbours, and writing the chunk
rewrites them; S is kept well under a chunk's size so that this costs little. When a chunk's size differs
from what later, stored chunks assumed, their frames are moved (``shift``). Writing, moving and
reading run under the stream's lock (storage.Storage); each shard is written under a temporary
name and renamed into place, so a reader never sees half a file.
Arrays stored one frame per file by earlier servers are converted on open (``adopt``).
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import json
import os
import secrets
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from atomscale_bluesky.shards import assemble_shard, decode_frame_into, inner_chunks, read_index

SEPARATOR = "."

#: One frame's zstd bytes (a view into a shard or an upload), or None for an all-zero frame.
Frame = bytes | memoryview | None

_BYTES = {"name": "bytes", "configuration": {"endian": "little"}}

#: Raw bytes of the frames one shard holds, at most (unless a frame alone is larger).
SHARD_RAW_BYTES = 16 * 1024 * 1024


def shard_frames(chunk_size: int, height: int, width: int) -> int:
    """Frames per shard of a stream: few files, and little to rewrite where chunks meet."""
    return max(1, min(chunk_size, SHARD_RAW_BYTES // (height * width)))


def array_metadata(n_total: int, shard_frames: int, height: int, width: int, attrs: dict) -> dict:
    """The zarr.json document of the dense stream array: shards of ``shard_frames`` frames."""
    return {
        "zarr_format": 3,
        "node_type": "array",
        "shape": [n_total, height, width],
        "data_type": "uint8",
        "chunk_grid": {
            "name": "regular",
            "configuration": {"chunk_shape": [shard_frames, height, width]},
        },
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": SEPARATOR}},
        "fill_value": 0,
        "codecs": [
            {
                "name": "sharding_indexed",
                "configuration": {
                    "chunk_shape": [1, height, width],
                    "codecs": [
                        _BYTES,
                        {"name": "zstd", "configuration": {"level": 3, "checksum": False}},
                    ],
                    "index_codecs": [_BYTES, {"name": "crc32c"}],
                    "index_location": "end",
                },
            }  # fmt: skip
        ],
        "attributes": attrs,
    }


def _is_sharded(doc: dict) -> bool:
    codecs = doc.get("codecs") or [{}]
    return bool(codecs[0].get("name") == "sharding_indexed")


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


#: Buffers per writev call (the kernel takes at most IOV_MAX, 1024 on Linux).
_WRITEV_BUFFERS = 512


def _write_parts(path: str, parts: Sequence[Any]) -> None:
    """Write buffers to a new file in order, without joining them."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        views = collections.deque(memoryview(p).cast("B") for p in parts)
        while views:
            written = os.writev(fd, list(itertools.islice(views, _WRITEV_BUFFERS)))
            while views and written >= views[0].nbytes:
                written -= views.popleft().nbytes
            if views and written:
                views[0] = views[0][written:]
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


class FrameStore:
    """The frames.zarr array of one stream: write, clear and move frames in shards; read frames."""

    def __init__(self, root: Path, shard_frames: int) -> None:
        if shard_frames < 1:
            raise ValueError(f"shard_frames must be at least 1; got {shard_frames}")
        self.root = root  # <data_dir>/rheed/<data_id>/frames.zarr
        self.shard_frames = shard_frames
        self.staging = root.parent / "incoming"
        self._prefix = os.path.join(root, "c.")

    def shard_path(self, shard: int) -> str:
        return f"{self._prefix}{shard}.0.0"

    def _shards(self, start: int, stop: int) -> Iterator[tuple[int, int, int]]:
        """``(shard, lo, hi)`` for each shard that frames [start, stop) touch, in order."""
        s = self.shard_frames
        for shard in range(start // s, -(-stop // s)):
            yield shard, max(start, shard * s), min(stop, (shard + 1) * s)

    # -- writing (under the stream's lock) --------------------------------------------------------

    def write(self, first: int, frames: Sequence[Frame]) -> None:
        """Put ``frames`` at frames [first, first + len(frames)), rewriting each shard once."""
        s = self.shard_frames
        for shard, lo, hi in self._shards(first, first + len(frames)):
            base = shard * s
            new = frames[lo - first : hi - first]
            if hi - lo == s:
                inner = list(new)
            else:
                inner = self._read_shard(shard)
                inner[lo - base : hi - base] = new
            self._write_shard(shard, inner)

    def clear(self, start: int, stop: int) -> None:
        """Make frames [start, stop) all zero (absent)."""
        if stop > start:
            self.write(start, [None] * (stop - start))

    def shift(self, start: int, stop: int, delta: int) -> None:
        """Move frames [start, stop) to [start + delta, stop + delta); the frames left behind
        become zero. Moves a shard's worth at a time, from the end when moving up and from the
        start when moving down, so no frame is overwritten before it has moved."""
        if delta == 0 or stop <= start:
            return
        blocks = range(start, stop, self.shard_frames)
        for lo in reversed(blocks) if delta > 0 else blocks:
            hi = min(lo + self.shard_frames, stop)
            self.write(lo + delta, self.read_raw(lo, hi))
        if delta > 0:
            self.clear(start, min(stop, start + delta))
        else:
            self.clear(max(start, stop + delta), stop)

    def _write_shard(self, shard: int, inner: Sequence[Frame]) -> None:
        """Replace shard ``shard`` with its ``shard_frames`` frames (no file when all are zero)."""
        path = self.shard_path(shard)
        if all(frame is None for frame in inner):
            _unlink(path)
            return
        parts = assemble_shard(inner)
        self.staging.mkdir(parents=True, exist_ok=True)
        tmp = f"{self.staging}/{secrets.token_hex(8)}.shard"
        try:
            _write_parts(tmp, parts)
            _move(tmp, path)
        except BaseException:
            _unlink(tmp)
            raise

    def write_metadata(self, n_total: int, height: int, width: int, attrs: dict) -> None:
        doc = array_metadata(n_total, self.shard_frames, height, width, attrs)
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
        """Convert an array stored one frame per file by an earlier server (frame i at
        ``c.{i}.0.0``, or ``c/{i}/0/0`` with the ``/`` separator) to shards; True if there was
        one. The shards are built beside the array and swapped in, so a crash part way leaves
        either the old array or the new one, and the next open finishes or redoes the work."""
        built = self.root.with_name(self.root.name + ".sharded")
        old = self.root.with_name(self.root.name + ".per-frame")
        if not self.root.exists() and (built / "zarr.json").exists():
            os.replace(built, self.root)  # a crash came between the two renames below
        shutil.rmtree(old, ignore_errors=True)
        shutil.rmtree(built, ignore_errors=True)
        try:
            doc = json.loads((self.root / "zarr.json").read_text())
        except FileNotFoundError:
            return False
        if _is_sharded(doc):
            return False
        target = FrameStore(built, self.shard_frames)
        files = _per_frame_files(self.root)
        for shard, lo, hi in target._shards(0, max(files, default=-1) + 1):
            inner: list[Frame] = [None] * self.shard_frames
            for index in range(lo, hi):
                if index in files:
                    inner[index - lo] = files[index].read_bytes()
            target._write_shard(shard, inner)
        n_total, height, width = doc["shape"]
        target.write_metadata(n_total, height, width, doc.get("attributes", {}))
        os.replace(self.root, old)
        os.replace(built, self.root)
        shutil.rmtree(old)
        return True

    # -- reading ----------------------------------------------------------------------------------

    def _read_shard(self, shard: int) -> list[Frame]:
        """The zstd frames of one shard (None: absent, an all-zero frame; or no file at all)."""
        try:
            with open(self.shard_path(shard), "rb") as fh:
                data = fh.read()
        except FileNotFoundError:
            return [None] * self.shard_frames
        return list(inner_chunks(data, read_index(data, self.shard_frames)))

    def read_raw(self, start: int, stop: int) -> list[Frame]:
        """The stored zstd bytes of frames [start, stop) (None: an all-zero frame)."""
        out: list[Frame] = []
        for shard, lo, hi in self._shards(start, stop):
            base = shard * self.shard_frames
            out += self._read_shard(shard)[lo - base : hi - base]
        return out

    @staticmethod
    def decode(
        raw: Sequence[Frame], height: int, width: int, reuse: np.ndarray | None = None
    ) -> np.ndarray:
        """Decompress frames read by ``read_raw`` into an (n, H, W) uint8 array: the first n
        frames of ``reuse`` when it is a writable C-contiguous (M >= n, H, W) uint8 array, else a
        new one. ShardError when a stored frame does not decode."""
        out = _frames_out(reuse, len(raw), height, width)
        for i, data in enumerate(raw):
            if data is None:
                out[i] = 0
            else:
                decode_frame_into(data, out[i], i)
        return out


def _frames_out(reuse: np.ndarray | None, n: int, height: int, width: int) -> np.ndarray:
    """The first ``n`` frames of ``reuse`` when it is a writable C-contiguous uint8 (M >= n, H, W)
    array, else a new one."""
    if (
        reuse is not None
        and reuse.dtype == np.uint8
        and reuse.shape[1:] == (height, width)
        and len(reuse) >= n
        and reuse.flags.c_contiguous
        and reuse.flags.writeable
    ):
        return reuse[:n]
    return np.empty((n, height, width), dtype=np.uint8)


def _per_frame_files(root: Path) -> dict[int, Path]:
    """Frame index -> file of an array stored one frame per file (either separator)."""
    files = {int(p.name.split(".")[1]): p for p in root.glob("c.*.0.0") if p.name[2:-4].isdigit()}
    folders = root / "c"
    if folders.is_dir():
        for frame in folders.iterdir():
            path = frame / "0" / "0"
            if frame.name.isdigit() and path.exists():
                files[int(frame.name)] = path
    return files
