"""The callback subscribed to a real RunEngine with in-memory ophyd devices and the local server."""

from __future__ import annotations

import threading

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
import numpy as np
import pytest
from bluesky.plans import count
from ophyd import Signal

from atomscale_bluesky.callback import AtomscaleCallback, AtomscaleCallbackError
from atomscale_bluesky.callback.frame_times import FrameTimer

from .devices import FrameStreamer, MemoryCamera

MEASURE_FRAMES = FrameTimer().measure_frames  # a camera's stream opens once its cadence is measured


@pytest.fixture
def stops(RE):
    collected = []
    RE.subscribe(lambda name, doc: collected.append(doc), "stop")
    return collected


def test_step_count_round_trip(server, client, RE):
    cam = MemoryCamera(name="cam")
    callback = AtomscaleCallback(client)
    RE.subscribe(callback)
    RE(count([cam], num=75), sample="GaAs-1")
    assert callback.flush(60)
    callback.close()
    (summary,) = callback.summaries
    (rheed,) = summary.rheed
    assert rheed.fps == pytest.approx(30.0) and rheed.fps_source == "AcquirePeriod"
    produced = cam.image.produced
    np.testing.assert_array_equal(
        server.reader.frames(rheed.data_id), np.stack([f for _, f in produced])
    )
    starts = [c["start_unix_ms_utc"] for c in server.reader.chunk_times(rheed.data_id)]
    assert starts == [int(round(produced[i][0] * 1000)) for i in (0, 60)]
    ts, values, units = server.reader.points(summary.timeseries.data_id, "cam_temperature")
    assert len(ts) == 75 and np.all(values == 600.0)


def test_monitor_stream_from_another_thread(server, client, RE):
    image = Signal(name="rheed_image", value=np.zeros((32, 40), np.uint8))
    streamer = FrameStreamer(image, n=60, fps=60.0)
    callback = AtomscaleCallback(client, fps=60.0)
    RE.subscribe(callback)

    @bpp.monitor_during_decorator([image])
    @bpp.run_decorator()
    def watch():
        streamer.start()
        while streamer._thread.is_alive():
            yield from bps.sleep(0.05)
        yield from bps.sleep(0.1)

    RE(watch())
    assert callback.flush(60)
    callback.close()
    (summary,) = callback.summaries
    (rheed,) = summary.rheed
    stored = server.reader.frames(rheed.data_id)
    expected = np.stack([f for _, f in streamer.produced])
    # the monitor's first event is the value at subscription time (zeros: nothing to compare)
    np.testing.assert_array_equal(stored[-60:], expected)
    assert summary.errors == 0


def test_failure_inside_the_callback_never_stops_the_run(server, client, RE, stops):
    # the backend refuses to create the RHEED stream (a refusal, not an outage to wait out)
    server.reader.set_faults(error_rate=1.0, error_statuses=[422], paths=["/rheed/stream"])
    try:
        cam = MemoryCamera(name="cam")
        callback = AtomscaleCallback(client)
        RE.subscribe(callback)
        RE(count([cam], num=20))
        assert callback.flush(60)
    finally:
        server.reader.clear_faults()
    callback.close()
    assert stops[-1]["exit_status"] == "success"
    (summary,) = callback.summaries
    assert summary.errors >= 1
    assert "opening the RHEED stream of cam_image" in summary.text()
    assert summary.rheed[0].not_sent == 20 and summary.lost == 20
    assert summary.points == 20  # the time series was not affected


def test_strict_mode_aborts_the_run(server, client, RE, stops):
    server.reader.set_faults(error_rate=1.0, error_statuses=[422], paths=["/rheed/stream"])
    try:
        cam = MemoryCamera(name="cam")
        callback = AtomscaleCallback(client, strict=True)
        RE.subscribe(callback)

        @bpp.run_decorator()
        def snapshots():
            """200 events, but once the camera's cadence is measured (its stream opens) wait
            (polled) until the upload has failed: the order of events, not the speed of the
            retries, decides where the run ends."""
            for _ in range(MEASURE_FRAMES):
                yield from bps.trigger_and_read([cam])
            for _ in range(1200):  # a 60 s deadline, not a duration
                if callback.counters.errors:
                    break
                yield from bps.sleep(0.05)
            for _ in range(200 - MEASURE_FRAMES):
                yield from bps.trigger_and_read([cam])

        with pytest.raises(AtomscaleCallbackError):
            RE(snapshots())
        assert callback.flush(60)
    finally:
        server.reader.clear_faults()
    callback.close()
    assert stops[-1]["exit_status"] in ("fail", "abort")
    # aborted at the first document after the failure
    assert stops[-1]["num_events"]["primary"] <= MEASURE_FRAMES + 1
    assert callback.summaries[0].exit_status in ("fail", "abort")


def test_full_queue_drops_and_counts_instead_of_blocking(server, client, RE):
    server.reader.set_faults(latency_s=2.0, paths=["/rheed/stream"])
    try:
        cam = MemoryCamera(name="cam")
        frame_bytes = 48 * 64
        callback = AtomscaleCallback(client, queue_max_bytes=10 * frame_bytes, queue_timeout_s=0.01)
        RE.subscribe(callback)
        RE(count([cam], num=100))
        assert callback.flush(60)
    finally:
        server.reader.clear_faults()
    callback.close()
    (summary,) = callback.summaries
    assert summary.dropped_overflow > 0
    assert summary.frames + summary.dropped_overflow == 100
    assert callback.counters.dropped_overflow == summary.dropped_overflow
    assert "work queue full" in summary.text() or summary.dropped_overflow


def test_counters_and_concurrent_delivery_are_thread_safe(server, client):
    """Events of two streams delivered from two threads at once all arrive exactly once."""
    from .docs import RunDocs, camera_stream, make_camera

    cam_a = make_camera("a_image", 80, fps=40.0, seed=20)
    cam_b = make_camera("b_image", 80, fps=40.0, seed=21)
    rd = RunDocs.start()
    camera_stream(rd, [cam_a], name="a_image_monitor")
    camera_stream(rd, [cam_b], name="b_image_monitor")
    start, desc_a, *rest = rd.docs
    events_a = [d for n, d in rest if n == "event" and "a_image" in d["data"]]
    desc_b = next(d for n, d in rest if n == "descriptor")
    events_b = [d for n, d in rest if n == "event" and "b_image" in d["data"]]
    callback = AtomscaleCallback(client)
    callback(*start)
    callback(*desc_a)
    callback("descriptor", desc_b)
    threads = [
        threading.Thread(target=lambda evs=evs: [callback("event", e) for e in evs])
        for evs in (events_a, events_b)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rd.docs = rd.docs[-1:]
    rd.stop()
    callback("stop", rd.docs[-1][1])
    assert callback.flush(60)
    callback.close()
    counters = callback.counters
    assert counters.events == 160 and counters.frames_pushed == 160
    # two RHEED streams; their frame counters find gaps and are no channels (no time series)
    assert counters.streams_opened == 2 and counters.streams_closed == 2
