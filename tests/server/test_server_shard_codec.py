"""The server's shard decoder and index re-packing, against shards built from the protocol recipe."""

from __future__ import annotations

import struct
from pathlib import Path

import crc32c
import numpy as np
import pytest
import zstandard
from server_kit import Proto, make_shard, random_frames

from atomscale_bluesky.server.runner import running_server
from atomscale_bluesky.shards import (
    EMPTY_ENTRY,
    ShardError,
    check_shard,
    decode_shard,
    read_index,
    repack,
)


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


def test_check_shard_refuses_what_decoding_refuses_for_structure() -> None:
    good = make_shard(random_frames(2, 6, 8, seed=3))
    frame = zstandard.ZstdCompressor(level=3).compress(random_frames(1, 6, 8)[0].tobytes())
    reserved = bytearray(frame)
    header = zstandard.frame_header_size(frame)
    reserved[header] |= 0b110  # block type 3: reserved
    cases = {
        "n-mismatch": (good, (3, 6, 8)),
        "hw-mismatch": (good, (2, 8, 6 + 1)),
        "trailing": (_one_entry_shard(frame + b"\x00"), (1, 6, 8)),
        "truncated": (_one_entry_shard(frame[:-1]), (1, 6, 8)),
        "reserved-block": (_one_entry_shard(bytes(reserved)), (1, 6, 8)),
        "not-zstd": (_one_entry_shard(b"\x00" * 20), (1, 6, 8)),
    }
    for name, (shard, dims) in cases.items():
        for verify in (check_shard, decode_shard):
            with pytest.raises(ShardError):
                verify(shard, dims)
                pytest.fail(f"{name}: {verify.__name__} accepted it")
    index = check_shard(good, (2, 6, 8))
    assert index.entries == decode_shard(good, (2, 6, 8)).entries


def test_server_without_analysis_checks_structure_and_reads_every_pixel(tmp_path: Path) -> None:
    """Without chunk listeners the server stores checked (not decompressed) shards; reading back
    decompresses them, so every pixel is compared end to end, and a malformed shard is refused."""
    frames = random_frames(4, 6, 8, seed=5)
    frames[2] = 0
    good = make_shard(frames)
    corrupt = bytearray(good)
    corrupt[5] ^= 0xFF  # the first frame's declared content size
    with running_server(tmp_path / "d", analysis=False) as server:
        proto = Proto.open(server.url, server.api_key)
        try:
            data_id = proto.create_rheed()
            meta = proto.presign_metadata(data_id, frames.shape, 4, 1_700_000_000_000)
            for body in (bytes(corrupt), good[:-3], good + b"\x00"):
                r = proto.put(proto.presign(0, meta).json()["url"], body)
                assert r.status_code == 400, r.text
            assert proto.put(proto.presign(0, meta).json()["url"], good).status_code == 200
            np.testing.assert_array_equal(server.reader.frames(data_id), frames)
            assert server.reader.rheed_stream(data_id)["counters"]["rejected"] == 3
        finally:
            proto.http.close()
