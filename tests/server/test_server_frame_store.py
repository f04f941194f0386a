"""FrameStore, the sharded frame array of one stream: frames written, cleared and moved across shard
boundaries read back as a model list says, through read_raw and through zarr-python."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import zarr

from atomscale_bluesky.server.frame_store import FrameStore, shard_frames
from atomscale_bluesky.shards import compress_frame

H, W = 4, 5


def frame(value: int) -> np.ndarray:
    """A distinct frame per value; 0 is the all-zero frame."""
    out = np.zeros((H, W), np.uint8)
    if value:
        out[value % H, :] = value % 251 + 1
        out[0, value % W] = value // 251 + 1
    return out


def check(store: FrameStore, model: list[int]) -> None:
    """read_raw and zarr-python both give the model's frames; zero frames take no index entry."""
    expected = np.stack([frame(v) for v in model]) if model else np.zeros((0, H, W), np.uint8)
    raw = store.read_raw(0, len(model))
    assert [r is None for r in raw] == [v == 0 for v in model]
    np.testing.assert_array_equal(FrameStore.decode(raw, H, W), expected)
    store.write_metadata(len(model), H, W, {})
    if model:
        np.testing.assert_array_equal(zarr.open_array(store.root, mode="r")[:], expected)
    shards = {int(p.name.split(".")[1]) for p in store.root.glob("c.*.0.0")}
    s = store.shard_frames
    assert shards == {i // s for i, v in enumerate(model) if v}  # no file for an all-zero shard


def put(store: FrameStore, model: list[int], first: int, values: list[int]) -> None:
    store.write(first, [compress_frame(frame(v)) if v else None for v in values])
    model.extend([0] * (first + len(values) - len(model)))
    model[first : first + len(values)] = values


@pytest.mark.parametrize("seed", range(4))
def test_writes_clears_and_shifts_across_shards_match_a_model(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    store = FrameStore(tmp_path / "frames.zarr", shard_frames=3)
    model: list[int] = []
    for step in range(40):
        op = rng.choice(["write", "write", "clear", "shift"])
        n = len(model)
        if op == "write" or n == 0:
            first = rng.randint(0, n + 4)
            values = [
                0 if rng.random() < 0.2 else 1 + step * 10 + i for i in range(rng.randint(1, 8))
            ]
            put(store, model, first, values)
        elif op == "clear":
            lo = rng.randrange(n)
            hi = rng.randint(lo, n)
            store.clear(lo, hi)
            model[lo:hi] = [0] * (hi - lo)
        else:
            lo = rng.randrange(n)
            hi = rng.randint(lo + 1, n)
            delta = rng.randint(-lo, 7)
            store.shift(lo, hi, delta)
            moved = model[lo:hi]
            model.extend([0] * max(0, hi + delta - n))
            left = range(lo, min(hi, lo + delta)) if delta > 0 else range(max(lo, hi + delta), hi)
            for i in left:
                model[i] = 0
            model[lo + delta : hi + delta] = moved
        check(store, model)
    assert not any((tmp_path / "incoming").iterdir())  # every shard was renamed into place


def test_a_chunk_covering_whole_shards_does_not_read_them(tmp_path: Path) -> None:
    """Shards a write covers entirely are replaced; an unreadable old shard there is no obstacle."""
    store = FrameStore(tmp_path / "frames.zarr", shard_frames=3)
    model: list[int] = []
    put(store, model, 0, list(range(1, 10)))
    Path(store.shard_path(1)).write_bytes(b"not a shard")
    put(store, model, 2, list(range(20, 27)))  # frames 2-8: shard 0 in part, 1 and 2 whole
    check(store, model)


def test_shards_hold_about_16_mb_of_raw_frames_and_at_most_a_chunk() -> None:
    assert shard_frames(240, 480, 640) == 54
    assert shard_frames(240, 2048, 2048) == 4
    assert shard_frames(10, 480, 640) == 10
    assert shard_frames(240, 8192, 8192) == 1  # a frame larger than 16 MB: one per shard


def test_a_shard_of_more_frames_than_one_writev_takes(tmp_path: Path) -> None:
    """Streams of small frames and large chunks have shards of over 1024 frames (IOV_MAX)."""
    store = FrameStore(tmp_path / "frames.zarr", shard_frames=3000)
    model: list[int] = []
    put(store, model, 0, [0 if i % 7 == 0 else i for i in range(1, 2501)])
    put(store, model, 2400, list(range(5000, 5500)))  # rewrites the shard it partly covers
    check(store, model)


def test_decode_fills_a_buffer_that_fits_and_makes_a_new_one_otherwise(tmp_path: Path) -> None:
    """Readers that decode chunk after chunk (the analysis) reuse one buffer: the frames land in
    its first rows, pixel-exact, zero frames zeroed over what the buffer held before."""
    store = FrameStore(tmp_path / "frames.zarr", shard_frames=3)
    model: list[int] = []
    put(store, model, 0, [7, 0, 9, 11])
    expected = np.stack([frame(v) for v in model])
    buffer = np.full((6, H, W), 255, np.uint8)
    out = FrameStore.decode(store.read_raw(0, 4), H, W, buffer)
    assert out.base is buffer and out.shape == (4, H, W)
    np.testing.assert_array_equal(buffer[:4], expected)
    assert (buffer[4:] == 255).all()
    readonly = np.zeros((6, H, W), np.uint8)
    readonly.flags.writeable = False
    for unfit in (np.zeros((3, H, W), np.uint8), np.zeros((6, H, W + 1), np.uint8),
                  np.zeros((6, H, W), np.uint16), np.zeros((6, H, W), np.uint8, order="F"),
                  readonly):  # fmt: skip
        fresh = FrameStore.decode(store.read_raw(0, 4), H, W, unfit)
        assert fresh.base is None and fresh.dtype == np.uint8
        np.testing.assert_array_equal(fresh, expected)
