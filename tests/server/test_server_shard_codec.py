"""The server's shard decoder and index re-packing, against shards built from the protocol recipe."""

from __future__ import annotations

import struct

import crc32c
import numpy as np
import pytest
import zstandard
from server_kit import make_shard, random_frames

from atomscale_bluesky.shards import EMPTY_ENTRY, ShardError, decode_shard, read_index, repack


def test_decode_round_trip_with_zero_frames() -> None:
    frames = random_frames(5, 7, 3)
    frames[[1, 4]] = 0
    shard = make_shard(frames)
    decoded = decode_shard(shard, (5, 7, 3))
    np.testing.assert_array_equal(decoded.frames, frames)
    assert decoded.entries[1] == (EMPTY_ENTRY, EMPTY_ENTRY)


def test_repack_pads_the_index_and_keeps_the_frames() -> None:
    frames = random_frames(3, 4, 4)
    shard = make_shard(frames)
    packed = repack(shard, decode_shard(shard, (3, 4, 4)), chunk_size=8)
    assert len(packed) == len(shard) + 16 * 5
    assert read_index(packed, 8)[3:] == ((EMPTY_ENTRY, EMPTY_ENTRY),) * 5
    out = decode_shard(packed, (8, 4, 4)).frames
    np.testing.assert_array_equal(out[:3], frames)
    assert not out[3:].any()
    assert repack(shard, decode_shard(shard, (3, 4, 4)), chunk_size=3) == shard
    with pytest.raises(ShardError, match="more than"):
        repack(shard, decode_shard(shard, (3, 4, 4)), chunk_size=2)


@pytest.mark.parametrize(
    ("dims", "message"),
    [((4, 4, 4), "checksum"), ((3, 2, 4), "decode[sd] to"), ((3, 8, 8), "decode[sd] to"),
     ((0, 4, 4), "positive"), ((400, 4, 4), "shorter")],
)  # fmt: skip
def test_wrong_dims_are_refused(dims: tuple[int, int, int], message: str) -> None:
    shard = make_shard(random_frames(3, 4, 4))
    with pytest.raises(ShardError, match=message):
        decode_shard(shard, dims)


def test_a_frame_header_declaring_a_huge_size_is_refused_without_allocating_it() -> None:
    # a flipped bit in the zstd frame header's content size: ~72 PB declared for a 4-byte frame
    shard = bytearray(make_shard(np.ones((1, 1, 4), dtype=np.uint8)))
    shard[4] ^= 208
    with pytest.raises(ShardError, match="decodes to 72340172821242116 bytes"):
        decode_shard(bytes(shard), (1, 1, 4))


def _one_entry_shard(blob: bytes) -> bytes:
    """A one-frame shard whose index entry spans exactly ``blob``."""
    index = struct.pack("<2Q", 0, len(blob))
    return blob + index + struct.pack("<I", crc32c.crc32c(index))


def test_bytes_after_a_frames_zstd_frame_are_refused() -> None:
    frame = random_frames(1, 6, 8)[0].tobytes()
    blob = zstandard.ZstdCompressor(level=3).compress(frame)
    for extra in (blob, b"\x00\x01\x02"):  # a second zstd frame, or garbage, inside the entry
        with pytest.raises(ShardError, match="follow the zstd frame"):
            decode_shard(_one_entry_shard(blob + extra), (1, 6, 8))
    with pytest.raises(ShardError, match="truncated"):
        decode_shard(_one_entry_shard(blob[:-2]), (1, 6, 8))


def test_frames_without_a_content_size_decode_and_are_size_checked() -> None:
    frames = random_frames(1, 6, 8)
    unsized = zstandard.ZstdCompressor(level=3, write_content_size=False)
    decoded = decode_shard(_one_entry_shard(unsized.compress(frames[0].tobytes())), (1, 6, 8))
    np.testing.assert_array_equal(decoded.frames, frames)
    # 64 MiB of zeros in a few KB, in an entry for a 48-byte frame
    bomb = unsized.compress(bytes(64 * 1024 * 1024))
    with pytest.raises(ShardError, match="more than 48"):
        decode_shard(_one_entry_shard(bomb), (1, 6, 8))
