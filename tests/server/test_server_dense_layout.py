"""Dense frame layout: chunks of any size N <= chunk_size land back to back, in chunk order.

Every test reads the stream back three ways (the read API, zarr-python on the data directory, and
the per-chunk offsets) and compares with the concatenation of the chunks in chunk order.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import sqlite3
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
import zarr
from server_kit import Proto, make_shard, random_frames
from zarr.codecs import ZstdCodec

from atomscale_bluesky.server.runner import LocalServer
from atomscale_bluesky.server.storage import ChunkGrant, Storage
from atomscale_bluesky.shards import EMPTY_ENTRY, decode_shard, read_index, repack

H, W = 6, 5


@pytest.fixture
def proto(local_server: LocalServer) -> Iterator[Proto]:
    client = Proto.open(local_server.url, local_server.api_key)
    yield client
    client.http.close()


def chunks_of(sizes: list[int], seed: int = 0) -> list[np.ndarray]:
    """Chunks of the given sizes, every frame distinct (frame i of the stream has seed-based pixels)."""
    total = random_frames(sum(sizes), H, W, seed=seed)
    out, lo = [], 0
    for n in sizes:
        out.append(total[lo : lo + n])
        lo += n
    return out


def frames_root(server: LocalServer, data_id: str) -> Path:
    return server.data_dir / "rheed" / data_id / "frames.zarr"


def assert_dense(server: LocalServer, data_id: str, chunks: list[np.ndarray]) -> None:
    """Read API, zarr-python and chunk offsets all agree with the chunks concatenated in order."""
    expected = np.concatenate(chunks)
    np.testing.assert_array_equal(server.reader.frames(data_id), expected)
    array = zarr.open_array(frames_root(server, data_id), mode="r")
    assert array.shape == expected.shape
    np.testing.assert_array_equal(array[:], expected)
    times = server.reader.chunk_times(data_id)
    offsets = np.cumsum([0] + [len(c) for c in chunks[:-1]]).tolist()
    assert [(c["idx"], c["n_frames"], c["offset"]) for c in times] == [
        (k, len(c), offsets[k]) for k, c in enumerate(chunks)
    ]
    info = server.reader.rheed_stream(data_id)
    assert info["n_frames"] == len(expected) and info["missing_chunks"] == []
    # an index entry exactly for each non-zero frame: nothing stale past the end or in a zero
    # frame's place, and a shard file only where a shard holds one
    assert stored_frames(frames_root(server, data_id)) == [
        i for i, f in enumerate(expected) if f.any()
    ]


def stored_frames(root: Path) -> list[int]:
    """Indices of the frames present in the shard files (every other frame reads as zero)."""
    s = json.loads((root / "zarr.json").read_text())["chunk_grid"]["configuration"]["chunk_shape"][
        0
    ]
    present = []
    for path in root.glob("c.*.0.0"):
        j = int(path.name.split(".")[1])
        entries = read_index(path.read_bytes(), s)
        assert any(e != (EMPTY_ENTRY, EMPTY_ENTRY) for e in entries), f"{path.name} is all zero"
        present += [j * s + i for i, e in enumerate(entries) if e != (EMPTY_ENTRY, EMPTY_ENTRY)]
    return sorted(present)


def write_per_frame_array(root: Path, frames: np.ndarray, separator: str) -> None:
    """The array as earlier servers stored it: one zstd frame per file, written by zarr-python
    (which, like them, writes no file for an all-zero frame)."""
    shutil.rmtree(root)
    array = zarr.create_array(
        root, shape=frames.shape, chunks=(1, *frames.shape[1:]), dtype="uint8", fill_value=0,
        compressors=ZstdCodec(level=3), chunk_key_encoding={"name": "default",
                                                            "separator": separator},
    )  # fmt: skip
    array[:] = frames


def test_partial_middle_chunk_arriving_after_later_chunks(
    proto: Proto, local_server: LocalServer
) -> None:
    data_id = proto.create_rheed()
    chunks = chunks_of([10, 4, 10, 7], seed=1)  # chunk 1 cut short by an acquisition pause
    for k in (0, 2, 3):
        assert proto.upload(data_id, k, chunks[k], chunk_size=10).status_code == 200
    got = local_server.reader.frames(data_id)  # chunk 1 not here yet: 10 zero frames in its place
    assert got.shape == (37, H, W) and not got[10:20].any()
    np.testing.assert_array_equal(got[20:], np.concatenate(chunks[2:]))
    assert local_server.reader.rheed_stream(data_id)["missing_chunks"] == [1]
    assert proto.upload(data_id, 1, chunks[1], chunk_size=10).status_code == 200
    assert_dense(local_server, data_id, chunks)
    np.testing.assert_array_equal(local_server.reader.frames(data_id, 14, 18), chunks[2][:4])


def test_reupload_with_a_different_size_replaces_the_chunk(
    proto: Proto, local_server: LocalServer
) -> None:
    data_id = proto.create_rheed()
    chunks = chunks_of([10, 10, 6], seed=2)
    chunks[2][[0, 3]] = 0  # zero frames (no files) must shift like the others
    for k, c in enumerate(chunks):
        assert proto.upload(data_id, k, c, chunk_size=10).status_code == 200
    shorter, longer = random_frames(3, H, W, seed=20), random_frames(8, H, W, seed=21)
    assert proto.upload(data_id, 1, shorter, chunk_size=10).status_code == 200
    assert_dense(local_server, data_id, [chunks[0], shorter, chunks[2]])
    assert proto.upload(data_id, 1, longer, chunk_size=10).status_code == 200
    assert_dense(local_server, data_id, [chunks[0], longer, chunks[2]])
    assert proto.upload(data_id, 2, chunks[2][:2], chunk_size=10).status_code == 200  # last shrinks
    assert_dense(local_server, data_id, [chunks[0], longer, chunks[2][:2]])
    info = local_server.reader.rheed_stream(data_id)
    assert info["counters"]["duplicates"] == 3 and info["counters"]["frames_stored"] == 20
    assert [c["uploads"] for c in info["chunks"]] == [1, 3, 2]


def test_out_of_order_arrivals_with_random_sizes_and_repeats(
    proto: Proto, local_server: LocalServer
) -> None:
    rng = random.Random(7)
    data_id = proto.create_rheed()
    sizes = [rng.randint(1, 8) for _ in range(12)]
    chunks = chunks_of(sizes, seed=3)
    for c in chunks:
        c[rng.randrange(len(c))] = 0 if rng.random() < 0.4 else c[0]
    order = list(range(12)) + [rng.randrange(12) for _ in range(5)]
    rng.shuffle(order)
    for k in order:
        assert proto.upload(data_id, k, chunks[k], chunk_size=8).status_code == 200
    assert_dense(local_server, data_id, chunks)


def test_all_zero_frames_are_absent_and_replace_earlier_ones(
    proto: Proto, local_server: LocalServer
) -> None:
    data_id = proto.create_rheed()
    chunks = chunks_of([5, 5], seed=4)
    chunks[0][[1, 4]] = 0
    for k, c in enumerate(chunks):
        assert proto.upload(data_id, k, c, chunk_size=5).status_code == 200
    assert_dense(local_server, data_id, chunks)
    assert (frames_root(local_server, data_id) / "c.1.0.0").exists()
    zeros = np.zeros((5, H, W), dtype=np.uint8)  # a re-upload of all-zero frames clears shard 1
    assert proto.upload(data_id, 1, zeros, chunk_size=5).status_code == 200
    assert_dense(local_server, data_id, [chunks[0], zeros])
    assert not (frames_root(local_server, data_id) / "c.1.0.0").exists()


def test_missing_chunk_is_reported_and_reads_as_chunk_size_zeros(
    proto: Proto, local_server: LocalServer
) -> None:
    data_id = proto.create_rheed()
    chunks = chunks_of([4, 3, 6, 5], seed=5)
    for k in (0, 2, 3):
        assert proto.upload(data_id, k, chunks[k], chunk_size=6).status_code == 200
    info = local_server.reader.rheed_stream(data_id)
    assert info["missing_chunks"] == [1] and info["n_frames"] == 4 + 6 + 6 + 5
    assert [c["offset"] for c in info["chunks"]] == [0, 10, 16]
    got = local_server.reader.frames(data_id)
    np.testing.assert_array_equal(got[:4], chunks[0])
    assert not got[4:10].any()
    np.testing.assert_array_equal(got[10:], np.concatenate(chunks[2:]))
    array = zarr.open_array(frames_root(local_server, data_id), mode="r")
    np.testing.assert_array_equal(array[:], got)
    assert proto.upload(data_id, 1, chunks[1], chunk_size=6).status_code == 200
    assert_dense(local_server, data_id, chunks)


def test_concurrent_puts_of_one_stream_with_a_reader(
    proto: Proto, local_server: LocalServer
) -> None:
    """8 PUTs at a time, shuffled, sizes changing on repeats; a reader never sees a broken state."""
    rng = random.Random(11)
    data_id = proto.create_rheed()
    sizes = [rng.randint(1, 6) for _ in range(40)]
    chunks = chunks_of(sizes, seed=6)
    first = {k: random_frames(rng.randint(1, 6), H, W, seed=100 + k) for k in range(0, 40, 3)}
    known = {f.tobytes() for c in [*chunks, *first.values()] for f in c}
    jobs = [(k, c) for k, c in first.items()]
    rng.shuffle(jobs)
    later = [(k, c) for k, c in enumerate(chunks)]
    rng.shuffle(later)
    stop = threading.Event()
    bad: list[str] = []

    def read_loop() -> None:
        with httpx.Client(base_url=local_server.url, timeout=30.0) as http:
            while not stop.is_set():
                r = http.get(
                    f"/local/rheed/{data_id}/frames", headers={"x-api-key": local_server.api_key}
                )
                if r.status_code != 200:
                    bad.append(r.text)
                    continue
                shape = tuple(int(s) for s in r.headers["x-shape"].split(","))
                got = np.frombuffer(r.content, np.uint8).reshape(shape)
                bad.extend("unknown frame" for f in got if f.any() and f.tobytes() not in known)

    def put(job: tuple[int, np.ndarray]) -> int:
        k, frames = job
        meta = proto.presign_metadata(data_id, frames.shape, 6, 1_700_000_000_000 + k)
        with httpx.Client(timeout=30.0) as http:
            r = http.post(
                proto.url + "/data_entries/raw_data/staged/upload_urls/",
                params={"original_filename": f"frames.zarr/frames/c/{k}/0/0", "num_parts": "1",
                        "staging_type": "stream"},
                json=meta, headers=proto.auth,
            )  # fmt: skip
            return http.put(r.json()["url"], content=make_shard(frames)).status_code

    reader = threading.Thread(target=read_loop)
    reader.start()
    try:
        with ThreadPoolExecutor(8) as pool:
            assert set(pool.map(put, jobs)) == {200}
            assert set(pool.map(put, later)) == {200}
    finally:
        stop.set()
        reader.join()
    assert bad == []
    assert_dense(local_server, data_id, chunks)


def test_stacked_data_dir_from_an_older_server_is_migrated(tmp_path: Path) -> None:
    """A data directory written with one chunk_size-slot shard per chunk reopens as dense."""
    chunks = chunks_of([5, 2, 5, 3], seed=8)
    storage = Storage(tmp_path)
    data_id = storage.create_rheed_stream("old", 10.0, 0.0, None, None, None)
    for k in (0, 1, 3):
        grant = ChunkGrant(data_id, k, (len(chunks[k]), H, W), 5, None, None, None, None)
        storage.store_chunk(grant, make_shard(chunks[k]))
    storage.close()
    # rewrite it as the older server left it: stacked shards, no frame_offset column
    root = tmp_path / "rheed" / data_id / "frames.zarr"
    for frame in root.glob("c.*.0.0"):
        frame.unlink()
    for k in (0, 1, 3):
        shard = make_shard(chunks[k])
        path = root / "c" / str(k) / "0" / "0"
        path.parent.mkdir(parents=True)
        path.write_bytes(repack(shard, decode_shard(shard, (len(chunks[k]), H, W)), 5))
    with sqlite3.connect(tmp_path / "atomscale.sqlite") as db:
        db.execute("ALTER TABLE rheed_chunks DROP COLUMN frame_offset")
    db.close()

    storage = Storage(tmp_path)
    try:
        expected = np.concatenate([chunks[0], chunks[1], np.zeros((5, H, W), np.uint8), chunks[3]])
        np.testing.assert_array_equal(storage.read_frames(data_id, None, None), expected)
        np.testing.assert_array_equal(zarr.open_array(root, mode="r")[:], expected)
        assert [c["offset"] for c in storage.chunk_times(data_id)] == [0, 5, 12]
        assert storage.stream_summary(data_id)["missing_chunks"] == [2]
        assert not (root / "c.stacked").exists()
    finally:
        storage.close()


@pytest.mark.parametrize("separator", ["/", "."])
def test_array_of_one_file_per_frame_from_an_older_server_is_converted(
    tmp_path: Path, separator: str
) -> None:
    """Frames stored one per file (``c/{i}/0/0`` or ``c.{i}.0.0``) are put in shards on open."""
    chunks = chunks_of([5, 3, 5], seed=9)
    chunks[1][1] = 0
    expected = np.concatenate(chunks)
    storage = Storage(tmp_path)
    data_id = storage.create_rheed_stream("old", 10.0, 0.0, None, None, None)
    for k in (0, 1, 2):
        grant = ChunkGrant(data_id, k, (len(chunks[k]), H, W), 5, None, None, None, None)
        storage.store_chunk(grant, make_shard(chunks[k]))
    storage.close()
    root = tmp_path / "rheed" / data_id / "frames.zarr"
    write_per_frame_array(root, expected, separator)
    assert len(list(root.rglob("0"))) + len(list(root.glob("c.*"))) >= len(expected) - 1

    storage = Storage(tmp_path)
    try:
        np.testing.assert_array_equal(storage.read_frames(data_id, None, None), expected)
        array = zarr.open_array(root, mode="r")
        np.testing.assert_array_equal(array[:], expected)
        assert array.shards == (5, H, W) and not (root / "c").exists()
        assert stored_frames(root) == [i for i, f in enumerate(expected) if f.any()]
        assert sorted(p.name for p in root.parent.iterdir()) == ["frames.zarr", "incoming"]
    finally:
        storage.close()


def test_conversion_interrupted_between_its_renames_is_finished_on_open(tmp_path: Path) -> None:
    """A crash after the old array was moved aside but before the shards took its place."""
    chunks = chunks_of([4, 4], seed=10)
    storage = Storage(tmp_path)
    data_id = storage.create_rheed_stream("old", 10.0, 0.0, None, None, None)
    for k in (0, 1):
        grant = ChunkGrant(data_id, k, (4, H, W), 4, None, None, None, None)
        storage.store_chunk(grant, make_shard(chunks[k]))
    storage.close()
    root = tmp_path / "rheed" / data_id / "frames.zarr"
    write_per_frame_array(root, np.concatenate(chunks), ".")
    shutil.copytree(root, root.with_name("frames.zarr.per-frame"))
    Storage(tmp_path).close()  # converts
    os.replace(root, root.with_name("frames.zarr.sharded"))  # the state the crash left

    storage = Storage(tmp_path)
    try:
        np.testing.assert_array_equal(storage.read_frames(data_id, None, None),
                                      np.concatenate(chunks))  # fmt: skip
        assert sorted(p.name for p in root.parent.iterdir()) == ["frames.zarr", "incoming"]
    finally:
        storage.close()


def test_staging_files_of_an_interrupted_upload_are_removed_on_open(tmp_path: Path) -> None:
    """A crash while a shard is written leaves its temporary file in ``incoming/``; the next
    server removes it and keeps what was stored."""
    chunk, later = chunks_of([4, 4], seed=3)
    storage = Storage(tmp_path)
    data_id = storage.create_rheed_stream("crashed", 10.0, 0.0, None, None, None)
    storage.store_chunk(ChunkGrant(data_id, 0, (4, H, W), 4, None, None, None, None),
                        make_shard(chunk))  # fmt: skip
    storage.close()
    incoming = tmp_path / "rheed" / data_id / "incoming"
    (incoming / "0123456789abcdef.shard").write_bytes(make_shard(later)[:100])
    storage = Storage(tmp_path)
    try:
        assert not any(incoming.iterdir())
        np.testing.assert_array_equal(storage.read_frames(data_id, None, None), chunk)
    finally:
        storage.close()


def test_large_frames_make_shards_smaller_than_a_chunk(tmp_path: Path) -> None:
    """2048x2048 frames: shards of 4 frames (16 MB raw), chunks of up to 5 arriving out of order,
    one cut short; every frame reads back in place through the API and zarr-python."""
    h = w = 2048
    sizes = [5, 3, 5, 5]
    values = iter(range(1, 100))
    chunks = []
    for n in sizes:
        chunk = np.zeros((n, h, w), np.uint8)
        for f in chunk:
            f[next(values) * 7 : next(values) * 7 + 3, :] = next(values)
        chunks.append(chunk)
    chunks[1][1] = 0
    storage = Storage(tmp_path)
    try:
        data_id = storage.create_rheed_stream("big", 10.0, 0.0, None, None, None)
        for k in (2, 0, 3, 1):
            grant = ChunkGrant(data_id, k, (sizes[k], h, w), 5, None, None, None, None)
            storage.store_chunk(grant, make_shard(chunks[k]))
        expected = np.concatenate(chunks)
        np.testing.assert_array_equal(storage.read_frames(data_id, None, None), expected)
        root = tmp_path / "rheed" / data_id / "frames.zarr"
        array = zarr.open_array(root, mode="r")
        assert array.shards == (4, h, w)
        np.testing.assert_array_equal(array[:], expected)
        assert stored_frames(root) == [i for i, f in enumerate(expected) if f.any()]
    finally:
        storage.close()
