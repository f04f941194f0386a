"""The analysis worker fed by storage: each stored chunk is read back and decoded into a buffer
the worker keeps per frame shape. Two streams of different frame sizes, chunks of different
lengths, interleaved: the results are those of the same frames handed to a worker directly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from plugins.ioc_fixtures import wait_for

from atomscale_bluesky.server.analysis import AnalysisWorker, ChunkNotice, start_worker
from atomscale_bluesky.server.storage import ChunkGrant, Storage
from atomscale_bluesky.shards import encode_shard

SHAPES = {"small": (32, 48), "large": (40, 64)}
LENGTHS = (10, 10, 6, 10)  # a short chunk between full ones: a buffer larger than the chunk
T0_MS = 1_700_000_000_000


def _frames(shape: tuple[int, int], n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    frames = rng.integers(1, 60, size=(n, *shape), dtype=np.uint8)
    level = rng.integers(120, 250, size=n, dtype=np.uint8)
    frames[:, 14:19, 22:27] = level[:, None, None]  # a spot whose level changes every frame
    return frames


def _series(worker: AnalysisWorker, data_id: str) -> list[dict]:
    return worker.results(data_id).response()["series_by_angle"][0]["series"]  # type: ignore[union-attr]


def test_chunks_read_back_from_storage_give_the_results_of_the_frames(tmp_path: Path) -> None:
    storage = Storage(tmp_path / "data")
    stored = start_worker(storage, "*shutter*")  # fed by storage's chunk listener
    direct = AnalysisWorker(storage)  # fed the frames themselves
    direct.start()
    try:
        new = storage.create_rheed_stream
        ids = {name: (new(name, 10.0, 0.0, None, None, None), new(f"{name} direct", 10.0, 0.0,
               None, None, None)) for name in SHAPES}  # fmt: skip
        for k, n in enumerate(LENGTHS):
            for j, (name, shape) in enumerate(SHAPES.items()):
                frames = _frames(shape, n, seed=10 * k + j)
                via_storage, via_notice = ids[name]
                start = T0_MS + k * 1000
                grant = ChunkGrant(
                    via_storage, k, (n, *shape), 10, start, start + 100 * n, None, None
                )
                storage.store_chunk(grant, encode_shard(frames))
                direct.submit(ChunkNotice(via_notice, k, n, start, 10.0, frames))
        total = sum(LENGTHS)

        def done() -> bool:
            return all(
                (r := worker.results(i)) is not None and len(r) == total
                for worker, pair in ((stored, [a for a, _ in ids.values()]),
                                     (direct, [b for _, b in ids.values()]))
                for i in pair
            )  # fmt: skip

        assert wait_for(done, timeout=30.0)
        assert stored.errors == 0 and stored.chunks_analysed == 2 * len(LENGTHS)
        for via_storage, via_notice in ids.values():
            got, expected = _series(stored, via_storage), _series(direct, via_notice)
            assert [p["frame_number"] for p in got] == list(range(total))
            assert [p["specular_intensity"] for p in got] == [
                p["specular_intensity"] for p in expected
            ]
            assert len({p["specular_intensity"] for p in got}) > total // 2  # frames differ
    finally:
        direct.stop()
        stored.stop()
        storage.close()
