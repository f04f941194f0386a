"""Chunking: hardware-time order, duplicates, late frames, gaps, fps measurement, point batches."""

from __future__ import annotations

import math

import numpy as np
import pytest

from atomscale_bluesky.callback.frame_chunker import CameraChunker, chunk_size_for
from atomscale_bluesky.callback.point_batcher import PointBatcher
from atomscale_bluesky.callback.routing import ChannelKey

T0 = 1_700_000_000.0


def _frames(values):
    return np.stack([np.full((8, 8), v, dtype=np.uint8) for v in values])


@pytest.mark.parametrize(
    ("fps", "seconds", "size"), [(30, 2.0, 60), (29.97, 2.0, 60), (10, 5.0, 50), (120, 1.0, 240)]
)
def test_chunk_size_is_chunk_seconds_of_frames_but_at_least_two_seconds(fps, seconds, size):
    assert chunk_size_for(fps, seconds) == size


def test_chunks_carry_first_frame_hardware_time_and_keep_timestamp_order():
    chunker = CameraChunker(fps=2.0, chunk_seconds=2.0)  # 4 frames per chunk
    order = [0, 2, 1, 3, 4, 6, 5]
    chunks = []
    for i in order:
        chunks += chunker.add(_frames([i]), [T0 + i * 0.5])
    chunks += chunker.finish()
    assert [len(c.frames) for c in chunks] == [4, 3]
    assert chunks[0].capture_start_ms == int(round(T0 * 1000))
    assert chunks[1].capture_start_ms == int(round((T0 + 2.0) * 1000))
    got = np.concatenate([np.stack(c.frames)[:, 0, 0] for c in chunks])
    assert got.tolist() == list(range(7))


def test_duplicates_and_late_frames_are_dropped_and_counted():
    chunker = CameraChunker(fps=1.0, chunk_seconds=2.0)  # 2 frames per chunk
    out = chunker.add(_frames([0, 1]), [T0, T0 + 1])
    assert len(out) == 1
    chunker.add(_frames([1]), [T0 + 1])  # same frame again (re-read) -> duplicate
    chunker.add(_frames([9]), [T0 + 0.5])  # older than what was flushed -> late
    chunker.add(_frames([2]), [T0 + 2])
    chunker.add(_frames([2]), [T0 + 2])  # duplicate within the pending frames
    rest = chunker.finish()
    assert chunker.stats.duplicates == 2 and chunker.stats.late == 1
    assert [np.stack(c.frames)[:, 0, 0].tolist() for c in rest] == [[2]]


def test_counter_jumps_count_missing_frames_and_resets():
    chunker = CameraChunker(fps=10.0)
    for i, counter in enumerate([5, 6, 9, 10, 1, 2]):
        chunker.add(_frames([i]), [T0 + i * 0.1], [counter])
    assert chunker.stats.missing == 2
    assert chunker.stats.gap_events == 1
    assert chunker.stats.counter_resets == 1


def test_timestamp_gaps_count_missing_frames_on_continuous_streams_only():
    # a first value long before a pause (no gap counted), then 2 frames missing at 10 fps
    stamps = [-300, 0, 0.1, 0.2, 0.5, 0.6]
    for continuous, expected in ((True, 2), (False, 0)):
        chunker = CameraChunker(fps=10.0)
        for i, t in enumerate(stamps):
            chunker.add(_frames([i]), [T0 + t], continuous=continuous)
        chunker.finish()
        assert chunker.stats.missing == expected


@pytest.mark.parametrize(
    ("stamps", "sizes"),
    [
        # a busy IOC: three frames stamped early, then a gap that only makes up for them
        ([0, 0.1, 0.2, 0.3, 0.31, 0.32, 0.33, 0.8, 0.9], [9]),
        # a paused acquisition: the frames after the gap are off the chunk's grid
        ([0, 0.1, 0.2, 0.3, 1.0, 1.1, 1.2], [4, 3]),
    ],
)
def test_a_time_gap_cuts_the_chunk_only_when_it_leaves_frames_off_its_spacing(stamps, sizes):
    chunker = CameraChunker(fps=10.0, chunk_seconds=2.0, cut_periods=4.0)  # 20 frames per chunk
    chunks = []
    for i, t in enumerate(stamps):
        chunks += chunker.add(_frames([i]), [T0 + t], [100 + i])
    chunks += chunker.finish()
    assert [len(c.frames) for c in chunks] == sizes
    assert np.concatenate([np.stack(c.frames)[:, 0, 0] for c in chunks]).tolist() == list(
        range(len(stamps))
    )
    assert chunker.stats.missing == 0


def test_fps_is_measured_from_timestamps_when_unknown():
    chunker = CameraChunker(fps=None, measure_frames=10)
    assert chunker.fps is None and chunker.fps_source == "measured"
    chunks = []
    for i in range(200):
        chunks += chunker.add(_frames([i % 250]), [T0 + i / 25.0])
    assert chunker.fps == pytest.approx(25.0)
    assert chunker.chunk_size == 50
    chunks += chunker.finish()
    assert sum(len(c.frames) for c in chunks) == 200
    assert all(len(c.frames) == 50 for c in chunks)


def test_fps_of_a_short_run_is_measured_at_finish():
    chunker = CameraChunker(fps=None)
    chunker.add(_frames([1, 2, 3]), [T0, T0 + 0.2, T0 + 0.4])
    chunks = chunker.finish()
    assert chunker.fps == pytest.approx(5.0)
    assert [len(c.frames) for c in chunks] == [3]


def test_one_timestamp_for_a_multi_frame_event_spreads_by_frame_period():
    chunker = CameraChunker(fps=4.0)
    chunker.add(_frames([0, 1, 2, 3]), [T0])
    (chunk,) = chunker.finish()
    assert chunk.first_ts == T0 and chunk.last_ts == pytest.approx(T0 + 0.75)


def test_missing_timestamp_is_counted():
    chunker = CameraChunker(fps=4.0)
    chunker.add(_frames([0]), [None])
    assert chunker.stats.missing_timestamps == 1


def _add(batcher, name, stamps, values, units=None, enum_strs=None):
    """One page holding one channel's column."""
    channel = ChannelKey(key=f"dev_{name}", name=name, units=units, enum_strs=enum_strs)
    stamps_column = {} if stamps is None else {channel.key: stamps}
    batcher.add_page({channel.key: channel}, {channel.key: values}, stamps_column, len(values))


def test_point_batcher_sorts_by_time_and_refuses_non_finite():
    batcher = PointBatcher(points_per_chunk=4, max_age_s=60)
    _add(batcher, "T", [T0 + 1, T0], [2.0, 1.0], units="K")
    _add(batcher, "T", [T0 + 2], [math.nan], units="K")
    _add(batcher, "P", [math.nan], [1.0])
    assert not batcher.due()
    _add(batcher, "P", [T0, T0 + 1], [1e-9, 2e-9], units="mbar")
    assert not batcher.due()  # due when one channel holds a full chunk, not on the total
    _add(batcher, "T", None, [5.0])  # no timestamp column: NaN, refused
    assert batcher.due()
    batch = batcher.take()
    stamps, values, units = batch.channels["T"]
    assert (stamps.tolist(), values.tolist(), units) == ([T0, T0 + 1], [1.0, 2.0], "K")
    assert batch.channels["P"][1].tolist() == [1e-9, 2e-9]
    assert batch.channels["P"][2] is None  # the units of a channel's first reading
    assert batch.non_finite == {"T": 2, "P": 1} and batch.points == 4
    assert batcher.channels["T"].non_finite == 2 and batcher.channels["T"].points == 2
    assert batcher.channels["T"].key == "dev_T"
    assert batcher.take().channels == {}


def test_point_batcher_reads_enums_bools_and_odd_values():
    batcher = PointBatcher(points_per_chunk=100, max_age_s=60)
    _add(batcher, "shutter", [T0, T0 + 1, T0 + 2], ["Open", "Closed", "Bogus"],
         enum_strs=("Closed", "Open"))  # fmt: skip
    _add(batcher, "flag", [T0, T0 + 1], [True, False])
    _add(batcher, "mixed", [T0, "bad", T0 + 2, T0 + 3, T0 + 4], [1, 2.5, None, "7.5", [1, 2]])
    _add(batcher, "short", [T0], [1.0, 2.0])  # the second row has no timestamp
    _add(
        batcher, "array", np.array([T0 + 1, T0]), np.array([2, 1], dtype=np.int16)
    )  # a decoded page
    _add(batcher, "empty", np.zeros(0), np.zeros(0))
    channels = batcher.take().channels
    assert channels["shutter"][1].tolist() == [1.0, 0.0]
    assert channels["flag"][1].tolist() == [1.0, 0.0]
    assert channels["mixed"][0].tolist() == [T0, T0 + 3]
    assert channels["mixed"][1].tolist() == [1.0, 7.5]
    assert channels["short"][1].tolist() == [1.0]
    assert channels["array"][0].tolist() == [T0, T0 + 1]
    assert channels["array"][1].tolist() == [1.0, 2.0]
    assert "empty" not in channels


def test_point_batcher_is_due_after_max_age():
    batcher = PointBatcher(points_per_chunk=1000, max_age_s=0.0)
    _add(batcher, "T", [T0], [1.0])
    assert batcher.due()
