"""Simulated IOC -> ophyd devices -> RunEngine -> AtomscaleCallback -> local server, read back.

An independent pyepics monitor records every frame the IOC publishes (with its EPICS timestamp and
UniqueId); the frames the server stored must be exactly those, in order, chunk by chunk.
"""

from __future__ import annotations

import threading
from types import SimpleNamespace

import bluesky.preprocessors as bpp
import numpy as np
import pytest
from plugins.ioc_fixtures import ca_write

from atomscale_bluesky.callback import AtomscaleCallback
from atomscale_bluesky.plans import count_growth, start_acquisition, stop_acquisition, wait


def monitor_plan(camera, sensors, until, *, fps, md=None, deadline=120.0):
    """Camera + sensor monitors around an acquisition (monitors opened inside the run) that goes
    on until ``until()`` holds: driven by what arrived, not by a duration; ``deadline`` (s) only
    ends a run that never gets there."""

    @bpp.monitor_during_decorator(camera.monitored + sensors.monitored)
    @bpp.run_decorator(md={"plan_name": "monitor_plan", **(md or {})})
    def inner():
        def body():
            yield from start_acquisition(camera, fps=fps)
            for _ in range(int(deadline / 0.05)):
                if until():
                    break
                yield from wait(0.05)

        return (yield from bpp.finalize_wrapper(body(), stop_acquisition(camera)))

    return (yield from inner())


class IocRecorder:
    """Every update of the camera's ArrayData and UniqueId_RBV, straight from Channel Access."""

    def __init__(self, prefix: str):
        import epics

        self.frames: list[tuple[float, np.ndarray]] = []
        self.ids: list[int] = []
        self._lock = threading.Lock()
        self._image = epics.PV(
            prefix + "image1:ArrayData", auto_monitor=True, callback=self._on_image
        )
        self._uid = epics.PV(
            prefix + "image1:UniqueId_RBV", auto_monitor=True, callback=self._on_uid
        )
        assert self._image.wait_for_connection(5) and self._uid.wait_for_connection(5)

    def _on_image(self, value=None, timestamp=None, **kw):
        with self._lock:
            self.frames.append((float(timestamp), np.array(value, dtype=np.uint8, copy=True)))

    def _on_uid(self, value=None, **kw):
        with self._lock:
            self.ids.append(int(value))

    def close(self):
        self._image.clear_callbacks()
        self._uid.clear_callbacks()


def _padded(flat, shape):
    """pyepics drops a CHAR waveform's trailing zero bytes; the device pads them back."""
    frame = np.zeros(shape[0] * shape[1], np.uint8)
    frame[: flat.size] = flat
    return frame.reshape(shape)


def _assert_stream_is_ioc_frames(server, rheed, recorder, shape):
    stored = server.reader.frames(rheed.data_id)
    chunks = server.reader.chunk_times(rheed.data_id)
    by_ms = {int(round(ts * 1000)): i for i, (ts, _) in enumerate(recorder.frames)}
    first = by_ms[chunks[0]["start_unix_ms_utc"]]
    expected = [_padded(f, shape) for _, f in recorder.frames[first : first + len(stored)]]
    assert len(expected) == len(stored)
    np.testing.assert_array_equal(stored, np.stack(expected))
    offset = 0
    for chunk in chunks:  # every chunk starts at its first frame's IOC timestamp
        ts = recorder.frames[first + offset][0]
        assert chunk["start_unix_ms_utc"] == int(round(ts * 1000))
        offset += chunk["n_frames"]
    return first


@pytest.mark.slow
@pytest.mark.parametrize("fps", [30.0, 120.0])
def test_monitor_plan_streams_every_ioc_frame(server, client, RE, camera, sensors, fps):
    duration = 10.0 if fps == 120.0 else 3.0  # of frames at fps: the run goes on until they came
    wanted_frames, wanted_points = int(fps * duration), int(duration * 5)
    if fps == 120.0:  # 320x240 at 120 fps: what two shared cores serve, render and record
        for suffix, value in (("cam1:SizeX", 320), ("cam1:SizeY", 240)):
            ca_write(camera.prefix + suffix, value)
    recorder = IocRecorder(camera.prefix)
    callback = AtomscaleCallback(client, rotation_key="growth_rotation_rpm")
    RE.subscribe(callback)
    stops, starts, images = [], [], []
    RE.subscribe(
        lambda name, doc: "rheed_image" in doc["data"] and images.append(doc["timestamps"]),
        "event",
    )
    RE.subscribe(lambda name, doc: stops.append(doc), "stop")
    RE.subscribe(lambda name, doc: starts.append(doc), "start")
    temperatures = []
    RE.subscribe(
        lambda name, doc: (
            "growth_substrate_temperature" in doc["data"] and temperatures.append(doc["seq_num"])
        ),
        "event",
    )
    counters = {}
    RE.subscribe(
        lambda name, doc: (
            "rheed_array_counter" in doc["data"]
            and counters.update(
                {doc["timestamps"]["rheed_array_counter"]: doc["data"]["rheed_array_counter"]}
            )
        ),
        "event",
    )
    try:
        # (+2: the monitor's first value, and at 120 fps the frame from before the size change)
        def enough():
            return len(images) >= wanted_frames + 2 and len(temperatures) > wanted_points

        RE(monitor_plan(camera, sensors, enough, fps=fps, md={"sample": "GaAs-e2e"}))
        assert callback.flush(120)
    finally:
        recorder.close()
        callback.close()
        for suffix, value in (("cam1:SizeX", 640), ("cam1:SizeY", 480)):
            ca_write(camera.prefix + suffix, value)
    (summary,) = callback.summaries
    assert summary.errors == 0, summary.error_messages
    h, w = (240, 320) if fps == 120.0 else (480, 640)
    # the monitor's first value (at 120 fps the frame from before the size change) is followed by
    # a pause: stale, left out, so it opens no stream of its own
    (rheed,) = summary.rheed
    assert rheed.frame_shape == (h, w) and summary.shape_changes == 0 and rheed.stale <= 1
    first = _assert_stream_is_ioc_frames(server, rheed, recorder, (h, w))
    # no frame lost: the stored frames are a contiguous run of what the IOC published (above),
    # and every image event the RunEngine emitted from the first stored frame on was stored
    t_first = recorder.frames[first][0]
    delivered = {s["rheed_image"] for s in images if s["rheed_image"] >= t_first}
    assert rheed.frames == len(delivered)
    assert stops[0]["exit_status"] == "success"
    assert rheed.frames >= wanted_frames
    assert summary.lost == 0 and summary.dropped_overflow == 0
    # "missing" counts frames the camera counted (ArrayCounter_RBV monitor) that never arrived;
    # the IOC's own cadence slipping under load is not missing
    fresh = [ts for ts in sorted(delivered) if ts >= starts[0]["time"]]
    counted = [ts for ts in fresh if ts in counters]
    seen = [ts for ts in fresh if counted[0] <= ts <= counted[-1]]
    assert rheed.missing == counters[counted[-1]] - counters[counted[0]] + 1 - len(seen)
    assert rheed.counter_resets == 0
    # sensors: each channel's points carry the IOC timestamps of the readbacks
    channels = summary.timeseries.channels
    assert "growth_substrate_temperature" in channels
    ts, values, units = server.reader.points(
        summary.timeseries.data_id, "growth_substrate_temperature"
    )
    assert len(ts) == channels["growth_substrate_temperature"].points >= wanted_points
    assert np.all(np.diff(ts) > 0) and np.all(np.isfinite(values))


def test_step_count_streams_each_triggered_frame(server, client, RE, camera, sensors):
    callback = AtomscaleCallback(client)
    RE.subscribe(callback)
    events = []
    RE.subscribe(lambda name, doc: events.append(doc), "event")
    try:
        RE(count_growth(camera, sensors, 12))
        assert callback.flush(60)
    finally:
        callback.close()
    (summary,) = callback.summaries
    (rheed,) = summary.rheed
    # triggered frames: the cadence is the events' (measured), unless AcquirePeriod agrees
    assert rheed.fps_measured is not None
    if rheed.fps_source == "measured":
        assert rheed.fps_declared is not None and rheed.fps_declared_source == "AcquirePeriod"
        assert "disagrees with the measured" in summary.text()
    else:
        assert rheed.fps_source == "AcquirePeriod"
    stored = server.reader.frames(rheed.data_id)
    expected = np.stack([np.asarray(e["data"]["rheed_image"]) for e in events])
    np.testing.assert_array_equal(stored, expected)
    chunk_starts = [c["start_unix_ms_utc"] for c in server.reader.chunk_times(rheed.data_id)]
    assert chunk_starts[0] == int(round(events[0]["timestamps"]["rheed_image"] * 1000))
    ts, _, _ = server.reader.points(summary.timeseries.data_id, "growth_substrate_temperature")
    np.testing.assert_allclose(
        ts, [e["timestamps"]["growth_substrate_temperature"] for e in events], atol=1e-6
    )


class DropImages:
    """A document filter between the RunEngine and the callback: drops chosen image events."""

    def __init__(self, callback, drop_seq):
        self.callback = callback
        self.drop_seq = set(drop_seq)
        self.image_desc = None
        self.delivered = []  # timestamps of image events handed to the callback
        self.counters = {}  # array counter readings by timestamp, as the RunEngine emitted them
        self.counter_desc = None
        self.start_time = None

    def __call__(self, name, doc):
        if name == "start":
            self.start_time = doc["time"]
        elif name == "descriptor" and "rheed_image" in doc["data_keys"]:
            self.image_desc = doc["uid"]
        elif name == "descriptor" and "rheed_array_counter" in doc["data_keys"]:
            self.counter_desc = doc["uid"]
        elif name == "event" and doc["descriptor"] == self.counter_desc:
            self.counters[doc["timestamps"]["rheed_array_counter"]] = doc["data"][
                "rheed_array_counter"
            ]
        elif name == "event" and doc["descriptor"] == self.image_desc:
            if doc["seq_num"] in self.drop_seq:
                return
            self.delivered.append(doc["timestamps"]["rheed_image"])
        self.callback(name, doc)

    def camera_missing(self):
        """Frames the camera counted between the first and last fresh delivered frames, not seen.

        (The counter's monitor may end before the image's: frames after its last reading are
        not judged, by the callback either.)
        """
        fresh = [ts for ts in self.delivered if ts >= self.start_time]
        counted = [ts for ts in fresh if ts in self.counters]
        seen = [ts for ts in fresh if counted[0] <= ts <= counted[-1]]
        return self.counters[counted[-1]] - self.counters[counted[0]] + 1 - len(seen)


@pytest.mark.parametrize("drop_seq", [(), (40, 41, 75)], ids=["clean", "dropped"])
def test_monitor_frame_gaps_come_from_the_counter_stream(server, client, RE, camera, drop_seq):
    fps, wanted = 30.0, 120  # frames: the run goes on until they came (past the dropped ones)
    callback = AtomscaleCallback(client)
    feed = DropImages(callback, drop_seq)
    RE.subscribe(feed)
    try:

        def enough():
            return len(feed.delivered) > wanted

        RE(monitor_plan(camera, SimpleNamespace(monitored=[]), enough, fps=fps))
        assert callback.flush(120)
    finally:
        callback.close()
    (summary,) = callback.summaries
    assert summary.errors == 0, summary.error_messages
    (rheed,) = summary.rheed
    # the counter stream says exactly which frames the callback never saw
    assert feed.camera_missing() == len(drop_seq)
    assert rheed.missing == len(drop_seq) and summary.missing == len(drop_seq)
    assert rheed.gap_events == (2 if drop_seq else 0) and rheed.counter_resets == 0
    # the monitor's stale first value (from before the run, then a pause) is left out, counted
    stale = [ts for ts in feed.delivered if ts < feed.start_time]
    assert rheed.stale == len(stale) <= 1
    assert rheed.frames == len(feed.delivered) - len(stale) >= wanted
    # every chunk starts at its first frame's hardware timestamp, its frames evenly spaced
    stamps = sorted(ts for ts in feed.delivered if ts >= feed.start_time)
    chunks = server.reader.chunk_times(rheed.data_id)
    assert sum(c["n_frames"] for c in chunks) == len(stamps)
    offset = 0
    for chunk in chunks:
        mine = np.array(stamps[offset : offset + chunk["n_frames"]])
        assert chunk["start_unix_ms_utc"] == int(round(mine[0] * 1000))
        assert np.all(np.diff(mine) <= 4.0 / fps)
        offset += chunk["n_frames"]
