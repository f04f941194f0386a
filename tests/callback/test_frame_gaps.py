"""Frame-gap accounting: counters matched to frames by timestamp, stale frames, resets, cuts."""

from __future__ import annotations

import numpy as np

from atomscale_bluesky.callback.frame_chunker import CameraChunker, ChunkStats
from atomscale_bluesky.callback.frame_gaps import CounterFeed, FrameSequence
from atomscale_bluesky.callback.routing import CounterKey, FrameKey, pick_counter

T0 = 1_700_000_000.0
FPS = 10.0


def _frames(values):
    return np.stack([np.full((8, 8), v, dtype=np.uint8) for v in values])


def _monitor(frames, counters, *, counters_first=False):
    """Feed image timestamps and (ts, counter) readings as two monitor streams would."""
    seq = FrameSequence()
    seq.feed = CounterFeed()
    stats = ChunkStats()
    if counters_first:
        for ts, value in counters:
            seq.feed.add(ts, value)
    for ts in frames:
        seq.add(ts, None, stats, continuous=True)
        seq.resolve(FPS)
    if not counters_first:
        for ts, value in counters:
            seq.feed.add(ts, value)
            seq.resolve(FPS)
    seq.resolve(FPS, final=True)
    return stats, seq


def test_counter_stream_matched_by_timestamp_counts_dropped_frames():
    stamps = [T0 + i / FPS for i in range(30)]
    counters = [(ts, 100 + i) for i, ts in enumerate(stamps)]
    delivered = [ts for i, ts in enumerate(stamps) if i not in (7, 8, 20)]
    for counters_first in (False, True):
        stats, seq = _monitor(delivered, counters, counters_first=counters_first)
        assert (stats.missing, stats.gap_events, stats.counter_resets) == (3, 2, 0)
        assert seq.waiting == 0


def test_frames_whose_counter_update_was_lost_are_not_missing():
    stamps = [T0 + i / FPS for i in range(20)]
    counters = [(ts, i) for i, ts in enumerate(stamps) if i not in (5, 6, 12)]
    stats, _ = _monitor(stamps, counters)
    assert stats.missing == 0 and stats.gap_events == 0


def test_stale_first_frame_and_timing_slips_are_not_missing():
    # the IOC's start-up frame (long before the run), then frames with slipped timing
    stale = T0 - 300.0
    fresh = [T0 + 0.05 + i / FPS + (0.25 if i > 10 else 0.0) for i in range(20)]
    counters = [(stale, 0)] + [(ts, 1 + i) for i, ts in enumerate(fresh)]
    stats, _ = _monitor([stale, *fresh], counters)
    assert stats.missing == 0 and stats.counter_resets == 0


def test_counter_reset_is_a_restart_not_missing():
    stamps = [T0 + i / FPS for i in range(10)]
    counters = [(ts, 50 + i if i < 5 else 1 + i - 5) for i, ts in enumerate(stamps)]
    stats, _ = _monitor(stamps, counters)
    assert (stats.missing, stats.counter_resets) == (0, 1)


def test_without_a_counter_time_gaps_count_but_not_a_pause():
    seq = FrameSequence()
    stats = ChunkStats()
    for ts in [T0 - 5.0, T0 + 0.0, T0 + 0.1, T0 + 0.4, T0 + 0.5]:
        seq.add(ts, None, stats, continuous=True)
    seq.resolve(FPS)
    assert seq.waiting == 5  # a counter stream may still be linked
    seq.resolve(FPS, final=True)
    assert stats.missing == 2 and stats.gap_events == 1


def test_chunks_are_cut_at_time_gaps_and_resets_so_frames_are_evenly_spaced():
    chunker = CameraChunker(fps=FPS, chunk_seconds=2.0)  # 20 frames per chunk
    stamps = (
        [T0 - 300.0] + [T0 + i / FPS for i in range(25)] + [T0 + 10 + i / FPS for i in range(5)]
    )
    chunks = []
    for i, ts in enumerate(stamps):
        chunks += chunker.add(_frames([i % 256]), [ts])
    chunks += chunker.finish()
    assert [len(c.frames) for c in chunks] == [1, 20, 5, 5]
    assert [c.first_ts for c in chunks] == [stamps[0], stamps[1], stamps[21], stamps[26]]
    for chunk in chunks:
        span = chunk.last_ts - chunk.first_ts
        assert abs(span - (len(chunk.frames) - 1) / FPS) < 1e-6
    got = np.concatenate([np.stack(c.frames)[:, 0, 0] for c in chunks])
    assert got.tolist() == list(range(len(stamps)))
    # a counter reset without a pause also starts a new chunk
    chunker = CameraChunker(fps=FPS)
    out = chunker.add(_frames(range(6)), [T0 + i / FPS for i in range(6)], [7, 8, 9, 1, 2, 3])
    assert [len(c.frames) for c in out + chunker.finish()] == [3, 3]
    assert chunker.stats.counter_resets == 1


def test_counter_stream_of_the_same_camera_is_picked():
    image = FrameKey(
        key="rheed_image",
        object_name="rheed_image",
        frame_shape=(480, 640),
        frames_per_event=1,
        dtype_numpy="|u1",
        bit_depth=None,
        external=None,
        counter_key=None,
        fps=None,
        flat=False,
        source="PV:RHEED:image1:ArrayData",
    )
    counters = [
        CounterKey(
            "other_array_counter", "other_array_counter", "PV:OTHER:image1:ArrayCounter_RBV"
        ),
        CounterKey("rheed_unique_id", "rheed_unique_id", "PV:RHEED:image1:UniqueId_RBV"),
        CounterKey(
            "rheed_array_counter", "rheed_array_counter", "PV:RHEED:image1:ArrayCounter_RBV"
        ),
        CounterKey("rheed_cam_counter", "rheed_cam_counter", "PV:RHEED:cam1:ArrayCounter_RBV"),
    ]
    assert pick_counter(image, counters) == counters[2]
    assert pick_counter(image, counters[:2]) == counters[1]
    assert pick_counter(image, counters[:1]) is None
    # without PV sources: by ophyd device name
    bare = [CounterKey(c.key, c.object_name, None) for c in counters]
    no_pv = FrameKey(**{**image.__dict__, "source": None})
    assert pick_counter(no_pv, bare) == bare[2]
    assert pick_counter(no_pv, bare[:1]) is None


def test_a_counter_no_camera_takes_from_keeps_only_recent_readings():
    """UniqueId next to ArrayCounter: its readings are never taken, yet memory stays bounded."""
    feed = CounterFeed(retain_s=60.0)
    t0 = 1_700_000_000.0
    for i in range(120 * 600):  # ten minutes at 120 Hz
        feed.add(t0 + i / 120.0, i)
    assert len(feed.values) <= 2 * 120 * 60 + 1024  # about a minute, never the whole run
    newest = t0 + (120 * 600 - 1) / 120.0
    assert feed.take(newest) == 120 * 600 - 1  # recent readings are all there
    assert feed.take(newest - 30.0) == 120 * 600 - 1 - 3600
    assert feed.take(t0) is None  # the oldest were forgotten
