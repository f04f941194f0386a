"""The RHEED shard codec: one chunk of uint8 frames as the Zarr v3 shard the stream upload carries.

The client encodes with it, the local server decodes with it. Byte layout (protocol §3.4, as the
reference client's zarrs sharding codec writes it): for each frame that is not entirely zero, one
zstd frame (level 3 unless the stream chose another ``compression_level``, content size in the
header, no checksum) of the frame's H·W bytes in C order,
concatenated; then an index of N ``(offset, nbytes)`` pairs as little-endian uint64, one per frame
in frame order, where an all-zero frame is omitted from the body and gets ``EMPTY_ENTRY`` twice;
then the CRC32C of the index bytes as a little-endian uint32. We always write frames in C order
(the reference's order varies; readers use the index), so at level 3 our zstd frames and index
equal the reference's byte for byte.

**All-zero chunks.** The reference raises ``missing encoded chunk`` for a chunk whose frames are
all zero, so the run loses it. We instead encode it like any other chunk: an empty body and N
all-0xFF index entries plus the CRC (16·N + 4 bytes). That is a valid shard in which every inner
chunk is absent, which zarr readers (and our local server) decode as N zero frames.
"""

from __future__ import annotations

import os
import struct
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import crc32c
import numpy as np
import zstandard

__all__ = [
    "EMPTY_ENTRY",
    "DecodedShard",
    "IndexEntry",
    "ShardError",
    "ShardIndex",
    "assemble_shard",
    "check_level",
    "check_shard",
    "compress_frame",
    "compressor",
    "decode_frame_into",
    "decode_shard",
    "encode_shard",
    "encode_shard_parts",
    "index_size",
    "inner_chunks",
    "read_index",
    "repack",
    "shard_key",
    "split_shard",
]

ZSTD_LEVEL = 3
#: The fastest zstd level offered (negative levels trade ratio for speed).
MIN_LEVEL = -7
#: Index value (offset and nbytes) of an inner chunk (frame) that is entirely the fill value 0.
EMPTY_ENTRY = 0xFFFF_FFFF_FFFF_FFFF
_ENTRY_BYTES = 16
_CRC_BYTES = 4

#: Chunks at least this large are compressed on several cores (python-zstandard threads).
PARALLEL_MIN_BYTES = 4 * 1024 * 1024
_THREADS = min(os.cpu_count() or 1, 4)
_local = threading.local()
_BLOCK_HEADER = 3  # bytes of a zstd block header
_RLE_BLOCK, _RESERVED_BLOCK = 1, 3  # zstd block types (0 raw, 2 compressed)

IndexEntry = tuple[int, int]
"""``(offset, nbytes)`` of one frame's zstd frame in the shard body."""


class ShardError(ValueError):
    """Frames that cannot be a shard, or shard bytes that do not decode as N frames of H x W."""


@dataclass(frozen=True)
class ShardIndex:
    """A shard whose structure is verified: the index entries pointing into its body."""

    entries: tuple[IndexEntry, ...]
    body_len: int


@dataclass(frozen=True)
class DecodedShard(ShardIndex):
    """A verified, decoded shard: its index entries and its frames."""

    frames: np.ndarray  # (N, H, W) uint8


def shard_key(chunk_idx: int) -> str:
    """The object key the backend stores chunk ``chunk_idx`` under (``original_filename``)."""
    return f"frames.zarr/frames/c/{chunk_idx}/0/0"


def index_size(n_frames: int) -> int:
    """Bytes taken by the index and its checksum for ``n_frames`` inner chunks."""
    return _ENTRY_BYTES * n_frames + _CRC_BYTES


# ---- encode -------------------------------------------------------------------------------------


def compressor(level: int) -> zstandard.ZstdCompressor:
    """One compressor per thread and level: python-zstandard compressors are not thread-safe."""
    cache: dict[int, zstandard.ZstdCompressor] | None = getattr(_local, "compressors", None)
    if cache is None:
        cache = _local.compressors = {}
    comp = cache.get(level)
    if comp is None:
        comp = cache[level] = zstandard.ZstdCompressor(level=level, write_checksum=False)
    return comp


def check_level(level: int) -> int:
    """``level`` if zstd accepts it (negative fast levels up to the maximum, 22), else ValueError."""
    if isinstance(level, bool) or not isinstance(level, int):
        raise ValueError(f"compression_level must be an int; got {level!r}")
    if not MIN_LEVEL <= level <= zstandard.MAX_COMPRESSION_LEVEL or level == 0:
        raise ValueError(
            f"compression_level must be between {MIN_LEVEL} and "
            f"{zstandard.MAX_COMPRESSION_LEVEL}, not 0; got {level}"
        )
    return level


def _may_be_empty(blob_size: int, frame_bytes: int) -> bool:
    """Whether a frame that compressed to ``blob_size`` bytes can be all zero (then look).

    An all-zero frame compresses to run-length blocks: under 40 bytes per MiB plus the header at
    every level, so frames above this bound hold a non-zero byte and are never scanned.
    """
    return blob_size <= 64 + frame_bytes // 16384


def compress_frame(frame: np.ndarray, level: int = ZSTD_LEVEL) -> bytes:
    """One uint8 (H, W) frame's zstd frame, as :func:`encode_shard_parts` writes it in a shard.

    Safe from any thread (one compressor per thread); zstd releases the GIL while it works, so
    frames compressed on a few threads as they arrive use every core.
    """
    return compressor(level).compress(np.ascontiguousarray(frame).data)


def encode_shard(frames: np.ndarray | Sequence[np.ndarray], *, level: int = ZSTD_LEVEL) -> bytes:
    """Encode uint8 frames ``(N, H, W)`` as one shard (see the module docstring)."""
    return b"".join(encode_shard_parts(frames, level=level))


def encode_shard_parts(
    frames: np.ndarray | Sequence[np.ndarray],
    *,
    level: int = ZSTD_LEVEL,
    compressed: Sequence[Any] | None = None,
) -> list[Any]:
    """The shard's bytes as a list of buffers in order (body frames, index, checksum).

    ``frames`` may also be a sequence of equal ``(H, W)`` uint8 arrays (a chunk's frames as they
    arrived): no stacking copy is made. zstd reads each frame's buffer directly and releases the
    GIL while compressing; a chunk of several MB is compressed on every core (up to 4). The parts
    are written out as they are (the spool writes them to its file), so a chunk of tens of MB is
    never joined into one more buffer of the same size. ``level`` is the zstd level (3, the
    protocol's, gives the reference client's bytes); any level decodes the same. ``compressed``
    holds, per frame, its zstd frame already made by :func:`compress_frame` at ``level`` (or None
    for a frame to compress here).
    """
    planes = _planes(frames)
    comp = compressor(check_level(level))
    views: list[bytes | bytearray | memoryview] = [plane.data for plane in planes]
    frame_bytes = planes[0].nbytes
    blobs: Sequence[Any]
    if compressed is not None:
        if len(compressed) != len(planes):
            raise ShardError(
                f"{len(compressed)} compressed frames given for a chunk of {len(planes)} frames"
            )
        blobs = [
            comp.compress(v) if b is None else b for v, b in zip(views, compressed, strict=True)
        ]
    elif len(views) > 1 and frame_bytes * len(views) >= PARALLEL_MIN_BYTES and _THREADS > 1:
        # Same parameters, one zstd frame per input, compressed on several cores: same bytes.
        result = comp.multi_compress_to_buffer(views, threads=_THREADS)
        blobs = [result[i] for i in range(len(result))]  # buffer segments, not copied
    else:
        blobs = [comp.compress(view) for view in views]
    kept = [
        None if _may_be_empty(memoryview(blob).nbytes, frame_bytes) and not plane.any() else blob
        for plane, blob in zip(planes, blobs, strict=True)
    ]
    return assemble_shard(kept)


def assemble_shard(blobs: Sequence[Any]) -> list[Any]:
    """A shard's bytes as buffers in order (body, index, checksum) from one zstd frame per inner
    chunk, or None for an all-zero one (omitted from the body, ``EMPTY_ENTRY`` in the index)."""
    body: list[Any] = []
    index: list[int] = []
    offset = 0
    for blob in blobs:
        if blob is None:
            index += (EMPTY_ENTRY, EMPTY_ENTRY)
            continue
        size = memoryview(blob).nbytes
        body.append(blob)
        index += (offset, size)
        offset += size
    index_bytes = struct.pack(f"<{len(index)}Q", *index)
    body.append(index_bytes)
    body.append(struct.pack("<I", crc32c.crc32c(index_bytes)))
    return body


def inner_chunks(data: Any, entries: Sequence[IndexEntry]) -> list[memoryview | None]:
    """Each inner chunk's zstd frame as a view into ``data``, or None where it is absent (zero)."""
    view = memoryview(data)
    return [
        None if offset == EMPTY_ENTRY and nbytes == EMPTY_ENTRY else view[offset : offset + nbytes]
        for offset, nbytes in entries
    ]


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


# ---- index --------------------------------------------------------------------------------------


def split_shard(data: bytes, n_frames: int) -> tuple[tuple[IndexEntry, ...], bytes]:
    """The ``n_frames`` index entries at the end of a shard (checksum verified), and the index bytes."""
    size = index_size(n_frames)
    if len(data) < size:
        raise ShardError(
            f"shard is {len(data)} bytes, shorter than the {size}-byte index of {n_frames} frames"
        )
    index = bytes(data[len(data) - size : len(data) - _CRC_BYTES])
    (stored_crc,) = struct.unpack("<I", data[len(data) - _CRC_BYTES :])
    computed = crc32c.crc32c(index)
    if stored_crc != computed:
        raise ShardError(
            f"shard index checksum mismatch (stored {stored_crc:#010x}, computed {computed:#010x}); "
            "is dims N right for this shard?"
        )
    values = struct.unpack(f"<{2 * n_frames}Q", index)
    entries = tuple((values[2 * i], values[2 * i + 1]) for i in range(n_frames))
    return entries, index


def read_index(data: bytes, n_frames: int) -> tuple[IndexEntry, ...]:
    """The ``n_frames`` index entries of a shard, checksum verified."""
    return split_shard(data, n_frames)[0]


def repack(data: bytes, decoded: ShardIndex, chunk_size: int) -> bytes:
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
    values += [EMPTY_ENTRY, EMPTY_ENTRY] * (chunk_size - n)
    index = struct.pack(f"<{2 * chunk_size}Q", *values)
    return data[: decoded.body_len] + index + struct.pack("<I", crc32c.crc32c(index))


# ---- decode -------------------------------------------------------------------------------------


def decode_shard(data: bytes, dims: tuple[int, int, int]) -> DecodedShard:
    """Decode ``data`` as a shard of shape ``dims`` = (N, H, W); raise ShardError if it does not fit."""
    index = check_shard(data, dims)
    n, h, w = dims
    frames = np.empty((n, h, w), dtype=np.uint8)
    view = memoryview(data)
    decompressor = _decompressor()
    for i, (offset, nbytes) in enumerate(index.entries):
        if offset == EMPTY_ENTRY and nbytes == EMPTY_ENTRY:
            frames[i] = 0
            continue
        _decompress_into(decompressor, view[offset : offset + nbytes], frames[i], i)
    return DecodedShard(entries=index.entries, body_len=index.body_len, frames=frames)


def decode_frame_into(segment: bytes | memoryview, out: np.ndarray, i: int = 0) -> None:
    """Decompress stored frame ``i``'s zstd frame, checked when its shard was (``check_shard``),
    straight into the C-contiguous (H, W) uint8 array ``out``; ShardError unless it fills ``out``
    exactly."""
    _decompress_into(_decompressor(), memoryview(segment), out, i)


def check_shard(data: bytes, dims: tuple[int, int, int]) -> ShardIndex:
    """Verify the structure of ``data`` as a shard of shape ``dims`` without decompressing it.

    Checked: the index checksum; every entry lies in the body; every non-empty entry holds
    exactly one zstd frame (header, block headers, optional checksum: nothing before or after)
    whose header declares H*W bytes (or no size) and whose blocks could hold H*W bytes. Not
    checked: the entropy-coded block contents, which only decompressing reads (decode_shard).
    """
    n, h, w = dims
    if n < 1 or h < 1 or w < 1:
        raise ShardError(f"dims must be positive, got {n},{h},{w}")
    entries = read_index(data, n)
    body_len = len(data) - index_size(n)
    view = memoryview(data)
    for i, (offset, nbytes) in enumerate(entries):
        if offset == EMPTY_ENTRY and nbytes == EMPTY_ENTRY:
            continue
        if offset + nbytes > body_len or nbytes == 0:
            raise ShardError(
                f"frame {i}: index entry (offset {offset}, {nbytes} bytes) lies outside the "
                f"{body_len}-byte shard body"
            )
        _check_frame(view[offset : offset + nbytes], i, (h, w))
    return ShardIndex(entries=entries, body_len=body_len)


def _check_frame(segment: memoryview, i: int, hw: tuple[int, int]) -> None:
    """ShardError unless ``segment`` is exactly one zstd frame that can decode to H*W bytes.

    Walks the frame header and block headers (RFC 8878 section 3.1.1): each block header is
    3 bytes (last-block flag, type, size); raw and compressed blocks carry ``size`` bytes, an RLE
    block one byte; a content checksum of 4 bytes follows the last block when the header says so.
    """
    frame_bytes = hw[0] * hw[1]
    try:
        declared = zstandard.frame_content_size(segment)
        pos = zstandard.frame_header_size(segment)
        has_checksum = zstandard.get_frame_parameters(segment).has_checksum
    except zstandard.ZstdError as exc:
        raise ShardError(f"frame {i}: not a zstd frame ({exc})") from exc
    if declared not in (-1, frame_bytes):  # -1: the header does not say
        raise ShardError(
            f"frame {i}: decodes to {declared} bytes (zstd header), expected H*W = "
            f"{hw[0]}*{hw[1]} = {frame_bytes}"
        )
    end, blocks, last = len(segment), 0, False
    while not last:
        if pos + _BLOCK_HEADER > end:
            raise ShardError(f"frame {i}: zstd frame is truncated")
        header = int.from_bytes(segment[pos : pos + _BLOCK_HEADER], "little")
        last, kind, size = bool(header & 1), (header >> 1) & 3, header >> 3
        if kind == _RESERVED_BLOCK or size > zstandard.BLOCKSIZE_MAX:
            raise ShardError(f"frame {i}: zstd block {blocks} is malformed")
        pos += _BLOCK_HEADER + (1 if kind == _RLE_BLOCK else size)
        blocks += 1
    pos += 4 if has_checksum else 0
    if pos > end:
        raise ShardError(f"frame {i}: zstd frame is truncated")
    if pos < end:
        raise ShardError(f"frame {i}: {end - pos} bytes follow the zstd frame in its index entry")
    if blocks * zstandard.BLOCKSIZE_MAX < frame_bytes:
        raise ShardError(
            f"frame {i}: {blocks} zstd block(s) cannot hold H*W = {hw[0]}*{hw[1]} = {frame_bytes}"
            " bytes"
        )


def _decompressor() -> zstandard.ZstdDecompressor:
    """This thread's decompressor (python-zstandard decompressors are not thread-safe)."""
    decompressor: zstandard.ZstdDecompressor | None = getattr(_local, "decompressor", None)
    if decompressor is None:
        decompressor = _local.decompressor = zstandard.ZstdDecompressor()
    return decompressor


def _decompress_into(
    decompressor: zstandard.ZstdDecompressor, segment: memoryview, out: np.ndarray, i: int
) -> None:
    """Decompress one checked zstd frame (``_check_frame``) straight into ``out``; ShardError
    unless it fills ``out`` exactly. zstd stops where the frame ends (its extent was checked)."""
    frame_bytes = out.nbytes
    target = out.reshape(-1).data
    got = 0
    try:
        with decompressor.stream_reader(segment, read_across_frames=False) as reader:
            while got < frame_bytes:
                step = reader.readinto(target[got:])
                if step == 0:
                    break
                got += step
            extra = reader.read(1)
    except zstandard.ZstdError as exc:
        raise ShardError(f"frame {i}: zstd frame does not decode ({exc})") from exc
    if got != frame_bytes or extra:
        size = f"more than {frame_bytes}" if extra else str(got)
        h, w = out.shape
        raise ShardError(
            f"frame {i}: decoded to {size} bytes, expected H*W = {h}*{w} = {frame_bytes}"
        )
