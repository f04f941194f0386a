"""Decode and re-pack RHEED shards (protocol section 3.4) for the local server.

A shard is concatenated zstd frames (one per non-zero image), then an index of N little-endian
uint64 ``(offset, nbytes)`` pairs, then the CRC32C of the index as a little-endian uint32. An entry of
all 0xFF bytes marks an all-zero frame. The server decodes every shard with the ``dims`` of its own
presign, so a bad shard is refused before anything is stored, and re-packs the index to the stream's
``chunk_size`` so that zarr-python reads a partial last chunk from a regular chunk grid.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import crc32c
import numpy as np
import zstandard

EMPTY = 0xFFFF_FFFF_FFFF_FFFF
"""Index value (both offset and nbytes) of a frame that is entirely the fill value 0."""


class ShardError(ValueError):
    """The shard bytes do not decode as N frames of H x W uint8 pixels."""


@dataclass(frozen=True)
class DecodedShard:
    """A verified shard: its frames and the index entries pointing into its body."""

    frames: np.ndarray  # (N, H, W) uint8
    entries: tuple[tuple[int, int], ...]
    body_len: int


def index_size(n_frames: int) -> int:
    """Bytes taken by the index and its checksum for ``n_frames`` inner chunks."""
    return 16 * n_frames + 4


def read_index(data: bytes, n_frames: int) -> tuple[tuple[int, int], ...]:
    """Parse and checksum-verify the index at the end of a shard of ``n_frames`` frames."""
    size = index_size(n_frames)
    if len(data) < size:
        raise ShardError(
            f"shard is {len(data)} bytes, shorter than the {size}-byte index of {n_frames} frames"
        )
    index = data[len(data) - size : len(data) - 4]
    (stored_crc,) = struct.unpack("<I", data[len(data) - 4 :])
    computed = crc32c.crc32c(index)
    if stored_crc != computed:
        raise ShardError(
            f"shard index checksum mismatch (stored {stored_crc:#010x}, computed {computed:#010x}); "
            "is dims N right for this shard?"
        )
    values = struct.unpack(f"<{2 * n_frames}Q", index)
    return tuple((values[2 * i], values[2 * i + 1]) for i in range(n_frames))


def decode_shard(data: bytes, dims: tuple[int, int, int]) -> DecodedShard:
    """Decode ``data`` as a shard of shape ``dims`` = (N, H, W); raise ShardError if it does not fit."""
    n, h, w = dims
    if n < 1 or h < 1 or w < 1:
        raise ShardError(f"dims must be positive, got {n},{h},{w}")
    entries = read_index(data, n)
    body_len = len(data) - index_size(n)
    frame_bytes = h * w
    frames = np.zeros((n, h, w), dtype=np.uint8)
    decompressor = zstandard.ZstdDecompressor()
    for i, (offset, nbytes) in enumerate(entries):
        if offset == EMPTY and nbytes == EMPTY:
            continue
        if offset + nbytes > body_len or nbytes == 0:
            raise ShardError(
                f"frame {i}: index entry (offset {offset}, {nbytes} bytes) lies outside the "
                f"{body_len}-byte shard body"
            )
        try:
            raw = decompressor.decompress(
                data[offset : offset + nbytes], max_output_size=frame_bytes
            )
        except zstandard.ZstdError as exc:
            raise ShardError(f"frame {i}: zstd frame does not decode ({exc})") from exc
        if len(raw) != frame_bytes:
            raise ShardError(
                f"frame {i}: decoded to {len(raw)} bytes, expected H*W = {h}*{w} = {frame_bytes}"
            )
        frames[i] = np.frombuffer(raw, dtype=np.uint8).reshape(h, w)
    return DecodedShard(frames=frames, entries=entries, body_len=body_len)


def repack(data: bytes, decoded: DecodedShard, chunk_size: int) -> bytes:
    """The same shard with its index padded to ``chunk_size`` entries (missing frames read as 0).

    The compressed frames are reused untouched; only the index and checksum are rewritten.
    """
    n = len(decoded.entries)
    if n > chunk_size:
        raise ShardError(f"shard holds {n} frames, more than the stream's chunk_size {chunk_size}")
    if n == chunk_size:
        return data
    values: list[int] = []
    for offset, nbytes in decoded.entries:
        values += [offset, nbytes]
    values += [EMPTY, EMPTY] * (chunk_size - n)
    index = struct.pack(f"<{2 * chunk_size}Q", *values)
    return data[: decoded.body_len] + index + struct.pack("<I", crc32c.crc32c(index))
