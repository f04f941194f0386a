"""Encode and decode one RHEED chunk as the Zarr v3 shard the Atomscale stream upload carries.

Byte layout (protocol §3.4, as the reference client's zarrs sharding codec writes it): for each
frame that is not entirely zero, one zstd frame (level 3, content size in the header, no
checksum) of the frame's H·W bytes in C order, concatenated; then an index of N
``(offset, nbytes)`` pairs as little-endian uint64, one per frame in frame order, where an
all-zero frame is omitted from the body and gets ``(2**64-1, 2**64-1)``; then the CRC32C of the
index bytes as a little-endian uint32. We always write frames in C order (the reference's order
varies; readers use the index), so our zstd frames and index equal the reference's byte for byte.

**All-zero chunks.** The reference raises ``missing encoded chunk`` for a chunk whose frames are
all zero, so the run loses it. We instead encode it like any other chunk: an empty body and N
all-0xFF index entries plus the CRC (16·N + 4 bytes). That is a valid shard in which every inner
chunk is absent, which zarr readers (and our local server) decode as N zero frames.
"""

from __future__ import annotations

import os
import struct
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import crc32c
import numpy as np
import zstandard

__all__ = [
    "EMPTY_ENTRY",
    "ShardError",
    "decode_shard",
    "encode_shard",
    "encode_shard_parts",
    "shard_key",
    "split_shard",
]

ZSTD_LEVEL = 3
#: Index value marking an inner chunk (frame) that is entirely the fill value 0.
EMPTY_ENTRY = 0xFFFF_FFFF_FFFF_FFFF
_INDEX_ENTRY_BYTES = 16
_CRC_BYTES = 4

_local = threading.local()
#: Chunks at least this large are compressed on several cores (python-zstandard threads).
PARALLEL_MIN_BYTES = 4 * 1024 * 1024
_THREADS = min(os.cpu_count() or 1, 4)


class ShardError(ValueError):
    """A shard whose bytes do not match the layout (bad checksum, offsets or sizes)."""


def _compressor() -> zstandard.ZstdCompressor:
    """One compressor per thread: python-zstandard compressors are not thread-safe."""
    comp = getattr(_local, "compressor", None)
    if comp is None:
        comp = zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_checksum=False)
        _local.compressor = comp
    return comp


def shard_key(chunk_idx: int) -> str:
    """The object key the backend stores chunk ``chunk_idx`` under (``original_filename``)."""
    return f"frames.zarr/frames/c/{chunk_idx}/0/0"


def encode_shard(frames: np.ndarray | Sequence[np.ndarray]) -> bytes:
    """Encode uint8 frames ``(N, H, W)`` as one shard (see the module docstring)."""
    return b"".join(encode_shard_parts(frames))


def encode_shard_parts(frames: np.ndarray | Sequence[np.ndarray]) -> list[Any]:
    """The shard's bytes as a list of buffers in order (body frames, index, checksum).

    ``frames`` may also be a sequence of equal ``(H, W)`` uint8 arrays (a chunk's frames as they
    arrived): no stacking copy is made. zstd reads each frame's buffer directly and releases the
    GIL while compressing. The parts are written out as they are (the spool writes them to its
    file), so a chunk of tens of MB is never joined into one more buffer of the same size.
    """
    planes = _planes(frames)
    comp = _compressor()
    nonzero = [bool(plane.any()) for plane in planes]
    todo: list[bytes | bytearray | memoryview] = [
        plane.data for plane, keep in zip(planes, nonzero, strict=True) if keep
    ]
    nbytes = sum(p.nbytes for p, keep in zip(planes, nonzero, strict=True) if keep)
    blobs: Iterator[Any]
    if len(todo) > 1 and nbytes >= PARALLEL_MIN_BYTES and _THREADS > 1:
        # Same parameters, one zstd frame per input, compressed on several cores: same bytes.
        result = comp.multi_compress_to_buffer(todo, threads=_THREADS)
        blobs = (result[i] for i in range(len(result)))  # buffer segments, not copied
    else:
        blobs = (comp.compress(view) for view in todo)
    body: list[Any] = []
    index: list[int] = []
    offset = 0
    for keep in nonzero:
        if not keep:
            index += (EMPTY_ENTRY, EMPTY_ENTRY)
            continue
        blob = next(blobs)
        size = memoryview(blob).nbytes
        body.append(blob)
        index += (offset, size)
        offset += size
    index_bytes = struct.pack(f"<{len(index)}Q", *index)
    body.append(index_bytes)
    body.append(struct.pack("<I", crc32c.crc32c(index_bytes)))
    return body


def _planes(frames: np.ndarray | Sequence[np.ndarray]) -> list[np.ndarray]:
    """The frames as C-contiguous (H, W) uint8 arrays (views when they already are)."""
    if isinstance(frames, np.ndarray):
        if frames.dtype != np.uint8 or frames.ndim != 3:
            raise ShardError(
                f"a shard holds uint8 (N,H,W) frames; got {frames.dtype} {frames.shape}"
            )
        frames = np.ascontiguousarray(frames)
        return list(frames)
    planes = [np.ascontiguousarray(f) for f in frames]
    if not planes:
        raise ShardError("a shard holds at least one frame")
    shape = planes[0].shape
    for plane in planes:
        if plane.dtype != np.uint8 or plane.ndim != 2 or plane.shape != shape:
            raise ShardError(
                f"a shard holds equal uint8 (H,W) frames; got {plane.dtype} {plane.shape} "
                f"next to {shape}"
            )
    return planes


def split_shard(shard: bytes, n: int) -> tuple[list[tuple[int, int]], bytes]:
    """The ``n`` index entries of a shard (checksum verified) and its index bytes."""
    need = n * _INDEX_ENTRY_BYTES + _CRC_BYTES
    if n <= 0 or len(shard) < need:
        raise ShardError(f"a shard of {n} frames needs at least {need} bytes; got {len(shard)}")
    index_bytes = shard[len(shard) - need : len(shard) - _CRC_BYTES]
    (stored,) = struct.unpack("<I", shard[-_CRC_BYTES:])
    if crc32c.crc32c(index_bytes) != stored:
        raise ShardError("shard index checksum does not match")
    values = struct.unpack(f"<{2 * n}Q", index_bytes)
    return list(zip(values[0::2], values[1::2], strict=True)), index_bytes


def decode_shard(shard: bytes, n: int, h: int, w: int) -> np.ndarray:
    """Decode a shard of ``n`` frames of ``h`` x ``w`` back to uint8 ``(n, h, w)``."""
    entries, _ = split_shard(shard, n)
    body_end = len(shard) - n * _INDEX_ENTRY_BYTES - _CRC_BYTES
    out = np.zeros((n, h, w), dtype=np.uint8)
    dctx = zstandard.ZstdDecompressor()
    for i, (offset, nbytes) in enumerate(entries):
        if offset == EMPTY_ENTRY and nbytes == EMPTY_ENTRY:
            continue
        if offset + nbytes > body_end:
            raise ShardError(f"frame {i} lies outside the shard body")
        raw = dctx.decompress(shard[offset : offset + nbytes], max_output_size=h * w)
        if len(raw) != h * w:
            raise ShardError(f"frame {i} decodes to {len(raw)} bytes, expected {h * w}")
        out[i] = np.frombuffer(raw, dtype=np.uint8).reshape(h, w)
    return out
