"""Shard encoding: layout, all-zero frames and chunks, round trip, zarr-python read-back."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import crc32c
import numpy as np
import pytest
import zstandard

from atomscale_bluesky.shards import (
    EMPTY_ENTRY,
    ShardError,
    check_level,
    compress_frame,
    decode_shard,
    encode_shard,
    encode_shard_parts,
    shard_key,
    split_shard,
)


def _frames(n: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, h, w), dtype=np.uint8)


def test_layout_matches_section_3_4() -> None:
    frames = _frames(20, 8, 6)
    frames[3] = 0
    shard = encode_shard(frames)
    entries, index = split_shard(shard, 20)
    assert entries[3] == (EMPTY_ENTRY, EMPTY_ENTRY)
    comp = zstandard.ZstdCompressor(level=3)
    offset = 0
    for i, frame in enumerate(frames):
        if i == 3:
            continue
        blob = comp.compress(frame.tobytes())
        assert entries[i] == (offset, len(blob))
        assert shard[offset : offset + len(blob)] == blob
        assert blob[:4] == b"\x28\xb5\x2f\xfd"
        offset += len(blob)
    assert len(shard) == offset + 16 * 20 + 4
    assert struct.unpack("<I", shard[-4:])[0] == crc32c.crc32c(index)


def test_round_trip_and_partial_zero_frames() -> None:
    frames = _frames(5, 30, 50, seed=1)
    frames[0] = 0
    frames[4] = 0
    assert (decode_shard(encode_shard(frames), (5, 30, 50)).frames == frames).all()


def test_all_zero_chunk_is_an_index_of_empty_entries() -> None:
    frames = np.zeros((4, 3, 3), np.uint8)
    shard = encode_shard(frames)
    assert len(shard) == 16 * 4 + 4
    entries, _ = split_shard(shard, 4)
    assert entries == ((EMPTY_ENTRY, EMPTY_ENTRY),) * 4
    assert (decode_shard(shard, (4, 3, 3)).frames == 0).all()


def test_bad_shards_are_rejected() -> None:
    shard = bytearray(encode_shard(_frames(2, 4, 4)))
    shard[-1] ^= 0xFF
    with pytest.raises(ShardError, match="checksum"):
        decode_shard(bytes(shard), (2, 4, 4))
    with pytest.raises(ShardError):
        encode_shard(np.zeros((2, 2), np.uint8))


def test_shard_key() -> None:
    assert shard_key(7) == "frames.zarr/frames/c/7/0/0"


def test_zarr_python_reads_our_shard(tmp_path: Path) -> None:
    zarr = pytest.importorskip("zarr")
    n, h, w = 6, 10, 12
    frames = _frames(n, h, w, seed=2)
    frames[2] = 0
    root = tmp_path / "a.zarr"
    root.mkdir()
    meta = {
        "zarr_format": 3,
        "node_type": "array",
        "shape": [n, h, w],
        "data_type": "uint8",
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [n, h, w]}},
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
        "fill_value": 0,
        "codecs": [
            {
                "name": "sharding_indexed",
                "configuration": {
                    "chunk_shape": [1, h, w],
                    "codecs": [
                        {"name": "bytes", "configuration": {"endian": "little"}},
                        {"name": "zstd", "configuration": {"level": 3, "checksum": False}},
                    ],
                    "index_codecs": [
                        {"name": "bytes", "configuration": {"endian": "little"}},
                        {"name": "crc32c"},
                    ],
                    "index_location": "end",
                },
            }
        ],
        "attributes": {},
    }
    (root / "zarr.json").write_text(json.dumps(meta))
    (root / "c" / "0" / "0").mkdir(parents=True)
    (root / "c" / "0" / "0" / "0").write_bytes(encode_shard(frames))
    assert (zarr.open_array(str(root), mode="r")[:] == frames).all()
    (root / "c" / "0" / "0" / "0").write_bytes(encode_shard(np.zeros((n, h, w), np.uint8)))
    assert (zarr.open_array(str(root), mode="r")[:] == 0).all()


def test_parallel_path_gives_the_same_bytes() -> None:
    frames = _frames(6, 1024, 1024, seed=5) // 8  # >= 4 MiB: compressed on several cores
    frames[1] = 0
    shard = encode_shard(frames)
    entries, _ = split_shard(shard, 6)
    comp = zstandard.ZstdCompressor(level=3)
    for i, (offset, size) in enumerate(entries):
        if i == 1:
            assert (offset, size) == (EMPTY_ENTRY, EMPTY_ENTRY)
            continue
        assert shard[offset : offset + size] == comp.compress(frames[i].tobytes())


@pytest.mark.parametrize("shape", [(5, 30, 50), (6, 1024, 1024)], ids=["serial", "parallel"])
def test_a_list_of_frames_encodes_to_the_same_bytes_without_stacking(shape) -> None:
    frames = _frames(*shape, seed=7) // 4
    frames[2] = 0
    assert encode_shard(list(frames)) == encode_shard(frames)
    with pytest.raises(ShardError, match="equal uint8"):
        encode_shard([frames[0], frames[1][:-1]])
    with pytest.raises(ShardError, match="at least one"):
        encode_shard([])


@pytest.mark.parametrize("level", [-3, 3, 9])
@pytest.mark.parametrize("shape", [(6, 30, 50), (6, 1024, 1024)], ids=["serial", "parallel"])
def test_frames_compressed_ahead_give_the_same_bytes(level: int, shape) -> None:
    frames = _frames(*shape, seed=11) // 8
    frames[3] = 0  # an all-zero frame compressed ahead is still left out of the body
    ahead = [compress_frame(f, level) for f in frames]
    ahead[1] = None  # a frame that arrived before there was a compressor: compressed at encode
    parts = encode_shard_parts(list(frames), level=level, compressed=ahead)
    assert b"".join(parts) == encode_shard(frames, level=level)
    if level == 3:  # the reference's zstd frames (content size, no checksum)
        reference = zstandard.ZstdCompressor(level=3)
        assert ahead[0] == reference.compress(frames[0].tobytes())
    with pytest.raises(ShardError, match="2 compressed frames given for a chunk of 6"):
        encode_shard_parts(list(frames), level=level, compressed=ahead[:2])


@pytest.mark.parametrize("level", [-7, 1, 3, 9, 19])
@pytest.mark.parametrize("shape", [(3, 1, 1), (4, 30, 50), (3, 2048, 2048)], ids=str)
def test_every_level_finds_zero_frames_and_decodes_the_same(level: int, shape) -> None:
    n, h, w = shape
    frames = np.zeros(shape, np.uint8)
    frames[0, -1, -1] = 1  # one non-zero byte, last: compresses as small as zero frames do
    frames[2] = _frames(1, h, w, seed=level + 10)[0] // 16
    shard = encode_shard(frames, level=level)
    entries, _ = split_shard(shard, n)
    assert entries[1] == (EMPTY_ENTRY, EMPTY_ENTRY)
    assert entries[0] != (EMPTY_ENTRY, EMPTY_ENTRY)
    assert (decode_shard(shard, shape).frames == frames).all()


def test_level_changes_the_bytes_and_is_checked() -> None:
    frames = _frames(4, 64, 64, seed=3) // 8
    fast, default, small = (encode_shard(frames, level=lv) for lv in (-5, 3, 19))
    assert default == encode_shard(frames)
    assert len({fast, default, small}) == 3
    for shard in (fast, small):
        assert (decode_shard(shard, (4, 64, 64)).frames == frames).all()
    for bad in (0, 23, -8, True, 3.0):
        with pytest.raises(ValueError, match="compression_level"):
            check_level(bad)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="compression_level"):
            encode_shard(frames, level=bad)  # type: ignore[arg-type]


def test_a_frame_longer_or_shorter_than_h_w_is_rejected() -> None:
    comp = zstandard.ZstdCompressor(level=3, write_content_size=False)
    for size in (15, 17):
        blob = comp.compress(bytes(range(size)))
        index = struct.pack("<2Q", 0, len(blob))
        shard = blob + index + struct.pack("<I", crc32c.crc32c(index))
        with pytest.raises(ShardError, match="decoded to"):
            decode_shard(shard, (1, 4, 4))
