"""Shutter states for the analysis: the incremental history agrees with a replay of all points,
and the worker's feed picks up shutter points stored after earlier chunks were analysed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from plugins.ioc_fixtures import wait_for

from atomscale_bluesky.server.analysis.monolayers import GrowthInterval, ShutterHistory
from atomscale_bluesky.server.analysis.shutter_feed import ShutterFeed
from atomscale_bluesky.server.analysis.worker import AnalysisWorker, ChunkNotice
from atomscale_bluesky.server.storage import Storage

T0 = 1_700_000_000.0

Point = tuple[float, str, float | None]


def replayed(points: list[Point], t: float) -> tuple[float, float | None] | None:
    """The reference: all points sorted and replayed; the last opening at or before ``t`` of the
    union of channels (open: value >= 0.5), and the closing after it."""
    events = sorted((ts, name, value >= 0.5) for ts, name, value in points if value is not None)
    state: dict[str, bool] = {}
    intervals: list[list[float | None]] = []
    for ts, name, is_open in events:
        was_open = any(state.values())
        state[name] = is_open
        if any(state.values()) and not was_open:
            intervals.append([ts, None])
        elif was_open and not any(state.values()):
            intervals[-1][1] = ts
    before = [iv for iv in intervals if iv[0] is not None and iv[0] <= t]
    return None if not before else (float(before[-1][0]), before[-1][1])  # type: ignore[arg-type]


def as_tuple(interval: GrowthInterval | None) -> tuple[float, float | None] | None:
    return None if interval is None else (interval.opened, interval.closed)


point = st.tuples(
    st.integers(0, 40).map(float),  # whole seconds: ties between channels happen
    st.sampled_from(["ga", "as", "in"]),
    st.sampled_from([0.0, 1.0, 1.0, 0.7, 0.2, None]),
)


@settings(max_examples=150, deadline=None, derandomize=True)
@given(batches=st.lists(st.lists(point, max_size=6), max_size=12), queries=st.data())
def test_history_fed_in_batches_agrees_with_replaying_all_points(
    batches: list[list[Point]], queries: st.DataObject
) -> None:
    """Batches in any time order (late points included): after each, every lookup equals the
    replay of everything received so far."""
    history = ShutterHistory()
    received: list[Point] = []
    for batch in batches:
        history.extend(batch)
        received.extend(batch)
        for t in queries.draw(st.lists(st.integers(-1, 41).map(float), min_size=3, max_size=3)):
            assert as_tuple(history.interval_at(t)) == replayed(received, t), (received, t)


def test_feed_reads_new_replaced_and_newly_related_points(tmp_path: Path) -> None:
    """The feed follows the run's tool-state streams: points stored later, a re-uploaded chunk
    that replaces points, a stream that appears later; other channels are ignored."""
    storage = Storage(tmp_path / "data")
    try:
        rheed = storage.create_rheed_stream("run7 (camera)", 10.0, 0.0, None, None, None)
        sensors, _ = storage.create_timeseries_stream("run7 (sensors)", None, 10, None)
        feed = ShutterFeed(storage, rheed, "*shutter*")
        assert feed.refresh().interval_at(T0 + 100) is None

        storage.store_points(
            sensors, 0,
            {"Ga Shutter": ([T0 + 10, T0 + 11], [0.0, 1.0], None),
             "temperature": ([T0 + 10, T0 + 11], [1.0, 0.0], "C")},
        )  # fmt: skip
        assert feed.refresh().interval_at(T0 + 15) == GrowthInterval(T0 + 11, None)
        read = storage.points_after(sensors)
        newest = max(r[0] for r in read)
        assert len(read) == 4 and storage.points_after(sensors, newest) == []

        storage.store_points(sensors, 1, {"Ga Shutter": ([T0 + 20], [0.0], None)})
        assert [r[2] for r in storage.points_after(sensors, newest)] == [T0 + 20]
        assert feed.refresh().interval_at(T0 + 15) == GrowthInterval(T0 + 11, T0 + 20)

        storage.store_points(sensors, 1, {"Ga Shutter": ([T0 + 25], [0.0], None)})  # re-upload
        assert feed.refresh().interval_at(T0 + 15) == GrowthInterval(T0 + 11, T0 + 25)

        shutters, _ = storage.create_timeseries_stream("run7 (shutters)", None, 10, None)
        storage.store_points(shutters, 0, {"As shutter": ([T0 + 30, T0 + 40], [1.0, 0.0], None)})
        history = feed.refresh()
        assert history.interval_at(T0 + 35) == GrowthInterval(T0 + 30, T0 + 40)
        assert history.interval_at(T0 + 29) == GrowthInterval(T0 + 11, T0 + 25)
        assert len(history) == 5  # the temperature channel is not a shutter
    finally:
        storage.close()


def _chunk(data_id: str, idx: int, n: int = 10) -> ChunkNotice:
    rng = np.random.default_rng(idx)
    frames = rng.integers(0, 60, size=(n, 32, 48), dtype=np.uint8)
    frames[:, 14:19, 22:27] = 200
    return ChunkNotice(data_id, idx, n, int((T0 + idx) * 1000), 10.0, frames)


def test_worker_sees_shutter_points_stored_after_earlier_chunks(tmp_path: Path) -> None:
    """Chunks analysed before the shutter's points arrive have no opening; the chunks after
    them carry the opening, then the closing, that arrived in between."""
    storage = Storage(tmp_path / "data")
    worker = AnalysisWorker(storage)
    worker.start()
    try:
        data_id = storage.create_rheed_stream("run8 (camera)", 10.0, 0.0, None, None, None)
        sensors, _ = storage.create_timeseries_stream("run8 (sensors)", None, 10, None)

        def analysed(n: int) -> bool:
            results = worker.results(data_id)
            return results is not None and len(results) == n

        worker.submit(_chunk(data_id, 0))
        worker.submit(_chunk(data_id, 1))
        assert wait_for(lambda: analysed(20), timeout=30.0)
        status = worker.results(data_id).status  # type: ignore[union-attr]
        assert status["shutter_opened_unix_s"] is None

        storage.store_points(sensors, 0, {"ga_shutter": ([T0 + 0.5, T0 + 1.5], [0, 1], None)})
        worker.submit(_chunk(data_id, 2))
        assert wait_for(lambda: analysed(30), timeout=30.0)
        response = worker.results(data_id).response()  # type: ignore[union-attr]
        assert response["analysis"]["shutter_opened_unix_s"] == T0 + 1.5
        assert response["analysis"]["shutter_closed_unix_s"] is None
        since = [p["relative_time_seconds"] for p in response["series_by_angle"][0]["series"]]
        assert since[20] == np.float64(T0 + 2.0) - (T0 + 1.5)

        storage.store_points(sensors, 1, {"ga_shutter": ([T0 + 2.5], [0], None)})
        worker.submit(_chunk(data_id, 3))
        assert wait_for(lambda: analysed(40), timeout=30.0)
        status = worker.results(data_id).status  # type: ignore[union-attr]
        assert status["shutter_closed_unix_s"] == T0 + 2.5
        assert worker.errors == 0
    finally:
        worker.stop()
        storage.close()
