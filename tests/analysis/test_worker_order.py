"""The analysis worker takes a stream's chunks in index order, whatever order they are stored
in, and skips a chunk still missing after ``gap_wait_s`` (on the worker's clock)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from plugins.ioc_fixtures import wait_for

from atomscale_bluesky.server.analysis.worker import AnalysisWorker, ChunkNotice
from atomscale_bluesky.server.storage import Storage


class Clock:
    """A clock the test moves by hand (the worker's notion of waiting time)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _chunk(data_id: str, idx: int, n: int = 10) -> ChunkNotice:
    rng = np.random.default_rng(idx)
    frames = rng.integers(0, 60, size=(n, 32, 48), dtype=np.uint8)
    frames[:, 14:19, 22:27] = 200 + 10 * (idx % 3)  # a bright spot
    return ChunkNotice(data_id, idx, n, 1_700_000_000_000 + idx * 1000, 10.0, frames)


def test_chunks_in_index_order_and_gaps_skipped(tmp_path: Path) -> None:
    storage = Storage(tmp_path / "data")
    clock = Clock()
    worker = AnalysisWorker(storage, gap_wait_s=5.0, clock=clock)
    worker.start()
    try:
        data_id = storage.create_rheed_stream("s", 10.0, 0.0, None, None, None)
        worker.submit(_chunk(data_id, 1))
        worker.submit(_chunk(data_id, 0))
        assert wait_for(
            lambda: (r := worker.results(data_id)) is not None and len(r) == 20, timeout=30.0
        )
        response = worker.results(data_id).response()  # type: ignore[union-attr]
        series = response["series_by_angle"][0]["series"]
        assert [p["frame_number"] for p in series] == list(range(20))
        times = [p["unix_timestamp_ms"] for p in series]
        assert times == sorted(times)
        assert response["analysis"]["spot"]["row"] in range(14, 19)

        worker.submit(_chunk(data_id, 3))  # chunk 2 never comes
        time.sleep(0.6)  # the worker checks gaps at least every 0.5 s when idle
        assert len(worker.results(data_id)) == 20  # type: ignore[arg-type]
        clock.now += 5.0
        assert wait_for(lambda: len(worker.results(data_id)) == 30, timeout=30.0)  # type: ignore[arg-type]
        series = worker.results(data_id).response()["series_by_angle"][0]["series"]  # type: ignore[union-attr]
        assert [p["frame_number"] for p in series[20:]] == list(range(30, 40))
        assert worker.errors == 0 and worker.chunks_analysed == 3
    finally:
        worker.stop()
        storage.close()
