"""The callback against the real local server, fed with real event_model documents.

Every frame and point is read back from the server and compared with what the "camera" and the
"sensors" produced, with their hardware timestamps.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from atomscale_bluesky.callback import AtomscaleCallback

from .docs import T0, RunDocs, SensorSpec, camera_stream, chunk_starts_ms, make_camera


def _run_and_flush(callback, rd):
    rd.feed(callback)
    assert callback.flush(60)
    return callback.summaries[-1]


def _rheed(summary, camera):
    (found,) = [r for r in summary.rheed if r.camera == camera]
    return found


def _assert_frames_stored(server, rheed, cam, chunk_size):
    assert rheed.data_id
    stored = server.reader.frames(rheed.data_id)
    np.testing.assert_array_equal(stored, cam.frames.astype(np.uint8))
    starts = [c["start_unix_ms_utc"] for c in server.reader.chunk_times(rheed.data_id)]
    assert starts == chunk_starts_ms(cam.times, chunk_size)


def _assert_points_stored(server, summary, sensor, channel=None):
    ts, values, units = server.reader.points(summary.timeseries.data_id, channel or sensor.key)
    np.testing.assert_allclose(ts, sensor.times, rtol=0, atol=1e-6)
    np.testing.assert_allclose(values, sensor.values.astype(float))
    assert units == (sensor.units or None)


@pytest.mark.parametrize("form", ["event", "page"])
@pytest.mark.parametrize("storage", ["inline", "ad_hdf5", "stream"])
def test_frames_and_points_round_trip(server, client, tmp_path, storage, form):
    cam = make_camera("cam_image", 50, fps=20.0, fps_config=20.0, seed=1)
    temp = SensorSpec("temperature", 600 + np.arange(50) * 0.5, cam.times + 0.003, units="K")
    rd = RunDocs.start(name="growth A")
    camera_stream(rd, [cam], tmp_path=tmp_path, storage=storage, form=form, sensors=[temp])
    rd.stop()
    callback = AtomscaleCallback(client)
    summary = _run_and_flush(callback, rd)
    callback.close()
    assert summary.errors == 0, summary.error_messages
    rheed = _rheed(summary, "cam_image")
    assert (rheed.frames, rheed.chunks, rheed.chunk_size) == (50, 2, 40)
    assert rheed.fps == 20.0 and rheed.fps_source == "AcquirePeriod"
    _assert_frames_stored(server, rheed, cam, 40)
    _assert_points_stored(server, summary, temp)
    stream = server.reader.rheed_stream(rheed.data_id)
    assert stream["name"] == "growth A (cam_image)"
    assert stream["fps"] == 20.0
    assert summary.exit_status == "success" and summary.lost == 0
    assert "cam_array_counter" not in summary.timeseries.channels  # camera bookkeeping


def test_stream_datum_without_file_times_uses_its_events_timestamps(server, client, tmp_path):
    cam = make_camera("det_image", 30, fps=10.0, seed=2)
    # the detector's own reading in the same events: its timestamp is the frame's
    stamp = SensorSpec("det_sum", np.arange(30.0), cam.times, object_name="det")
    rd = RunDocs.start()
    camera_stream(
        rd, [cam], tmp_path=tmp_path, storage="stream", sensors=[stamp], epics_times_in_file=False
    )
    rd.stop()
    callback = AtomscaleCallback(client)
    summary = _run_and_flush(callback, rd)
    callback.close()
    rheed = _rheed(summary, "det_image")
    assert rheed.fps == pytest.approx(10.0) and rheed.fps_source == "measured"
    _assert_frames_stored(server, rheed, cam, 20)


def test_several_cameras_baseline_and_monitor_streams(server, client, tmp_path):
    cam1 = make_camera("cam1_image", 12, fps=2.0, seed=3, fps_config=2.0)
    cam2 = make_camera("cam2_image", 90, fps=30.0, seed=4, t0=T0 + 0.01)
    cam3 = make_camera("cam3_image", 12, fps=5.0, seed=5, flat=True, fps_config=5.0)
    base = SensorSpec("cell_Ga", np.array([900.0, 901.0]), np.array([T0 - 1, T0 + 100]), "C")
    temp = SensorSpec("substrate_T", 600 + np.arange(40) * 0.25, T0 + np.arange(40) * 0.1, "C")
    shutter = SensorSpec(
        "shutter", np.array([True, False] * 20), T0 + np.arange(40) * 0.1 + 0.05, dtype="boolean"
    )
    rd = RunDocs.start(plan_name="monitor_growth", scan_id=12)
    camera_stream(rd, [], sensors=[base], name="baseline")
    camera_stream(rd, [cam1, cam3], name="primary", form="page")
    camera_stream(rd, [cam2], name="cam2_image_monitor")
    camera_stream(rd, [], sensors=[temp, shutter], name="substrate_T_monitor")
    rd.stop()
    callback = AtomscaleCallback(client)
    summary = _run_and_flush(callback, rd)
    callback.close()
    assert summary.errors == 0, summary.error_messages
    assert sorted(r.camera for r in summary.rheed) == ["cam1_image", "cam2_image", "cam3_image"]
    _assert_frames_stored(server, _rheed(summary, "cam1_image"), cam1, 4)
    _assert_frames_stored(server, _rheed(summary, "cam2_image"), cam2, 60)
    _assert_frames_stored(server, _rheed(summary, "cam3_image"), cam3, 10)
    assert _rheed(summary, "cam2_image").fps_source == "measured"
    for sensor in (base, temp, shutter):
        _assert_points_stored(server, summary, sensor)
    assert server.reader.rheed_stream(summary.rheed[0].data_id)["name"].startswith(
        "monitor_growth scan 12"
    )
    assert set(summary.data_ids) >= {r.data_id for r in summary.rheed}


def test_metadata_sample_project_tags_rotation_and_overrides(server, client):
    cam = make_camera("cam_image", 20, fps=10.0, seed=6)
    rot = SensorSpec("rotation", np.full(20, 12.0), cam.times, "rpm")
    rd = RunDocs.start(
        sample={"name": "GaAs-042", "composition": "GaAs"},
        project_id="proj-1",
        tags=["MBE", "homoepitaxy"],
        fps=10.0,
    )
    camera_stream(rd, [cam], sensors=[rot])
    rd.stop()
    callback = AtomscaleCallback(client, rotation_key="rotation", rename={"rotation": "rpm"})
    summary = _run_and_flush(callback, rd)
    rheed = _rheed(summary, "cam_image")
    stream = server.reader.rheed_stream(rheed.data_id)
    assert stream["rotations_per_min"] == 12.0
    assert rheed.fps_source == "metadata"
    assert "GaAs-042" in str(stream["sample"]) and stream["project_id"] == "proj-1"
    assert sorted(t["name"] if isinstance(t, dict) else t for t in stream["tags"]) == [
        "MBE",
        "homoepitaxy",
    ]
    assert "rpm" in summary.timeseries.channels
    # the constructor overrides the start document
    rd2 = RunDocs.start(sample="ignored", rpm=30, tags=["x"])
    camera_stream(rd2, [make_camera("cam_image", 20, seed=7)])
    rd2.stop()
    callback2 = AtomscaleCallback(
        client,
        sample="InP-7",
        tags=["override"],
        fps=8.0,
        rotations_per_min=0.0,
        stream_name="custom",
    )
    s2 = _run_and_flush(callback2, rd2)
    stream2 = server.reader.rheed_stream(s2.rheed[0].data_id)
    assert "InP-7" in str(stream2["sample"]) and stream2["rotations_per_min"] == 0.0
    assert stream2["name"] == "custom (cam_image)" and stream2["fps"] == 8.0
    callback.close()
    callback2.close()


def test_runs_without_stop_are_finalized_at_next_start_and_at_close(server, client):
    cam_a = make_camera("cam_image", 30, fps=10.0, seed=8)
    cam_b = make_camera("cam_image", 30, fps=10.0, seed=9, t0=T0 + 100)
    callback = AtomscaleCallback(client)
    first = RunDocs.start(scan_id=1)
    camera_stream(first, [cam_a])  # no stop: the RunEngine process died, say
    first.feed(callback)
    second = RunDocs.start(scan_id=2)
    camera_stream(second, [cam_b])
    second.feed(callback)
    assert callback.flush(60)
    assert len(callback.summaries) == 1
    assert callback.summaries[0].exit_status == "no stop document"
    callback.close()  # the second run is still open: close() finalizes it
    assert len(callback.summaries) == 2
    for summary, cam in zip(callback.summaries, (cam_a, cam_b), strict=True):
        _assert_frames_stored(server, _rheed(summary, "cam_image"), cam, 20)
        assert server.reader.rheed_stream(summary.rheed[0].data_id)["status"] == "finalized"


def test_uint16_frames_follow_the_declared_bit_depth(server, client):
    cam = make_camera("cam_image", 20, fps=10.0, seed=10, dtype=np.uint16, dtype_numpy="<u2")
    rd = RunDocs.start(bit_depth=12)
    camera_stream(rd, [cam])
    rd.stop()
    callback = AtomscaleCallback(client)
    summary = _run_and_flush(callback, rd)
    callback.close()
    stored = server.reader.frames(summary.rheed[0].data_id)
    np.testing.assert_array_equal(stored, (cam.frames >> 4).astype(np.uint8))


def test_bad_input_is_counted_and_affects_only_its_data(server, client, tmp_path, caplog):
    good = make_camera("cam_image", 40, fps=10.0, seed=11)
    other = make_camera("cam2_image", 20, fps=10.0, seed=12)
    temp = SensorSpec("T", np.r_[np.arange(38.0), math.nan, math.inf], good.times, "K")
    rd = RunDocs.start()
    camera_stream(rd, [good], sensors=[temp], form="event")
    camera_stream(rd, [other], name="second", storage="ad_hdf5", tmp_path=tmp_path)
    docs = rd.docs
    events = [i for i, (n, d) in enumerate(docs) if n == "event" and "cam_image" in d["data"]]
    # a duplicated event and two swapped (out-of-order) events
    docs.insert(events[10] + 1, docs[events[10]])
    i, j = events[20] + 1, events[21] + 1
    docs[i], docs[j] = docs[j], docs[i]
    # an event whose descriptor never came
    orphan = dict(docs[events[5]][1], descriptor="no-such-descriptor", uid="orphan")
    docs.insert(3, ("event", orphan))
    # the second camera's file is replaced by junk: only its frames are lost
    (tmp_path / "cam2_image_second.h5").write_bytes(b"junk" * 1000)
    rd.stop()
    callback = AtomscaleCallback(client)
    summary = _run_and_flush(callback, rd)
    callback.close()
    rheed = _rheed(summary, "cam_image")
    _assert_frames_stored(server, rheed, good, 20)
    assert summary.duplicate_events == 1
    assert summary.out_of_order_events == 1
    assert summary.orphan_events == 1
    assert summary.timeseries.channels["T"].non_finite == 2
    assert summary.timeseries.channels["T"].points == 38
    broken = _rheed(summary, "cam2_image")
    assert broken.external_failed == 20 and broken.frames == 0
    assert summary.errors >= 1 and summary.lost == 20
    assert "not a readable HDF5 file" in caplog.text
    assert "duplicate event seq_num" in caplog.text


def test_huge_frames_shape_and_dtype_changes(server, client):
    small = make_camera("cam_image", 20, h=16, w=16, fps=10.0, seed=13)
    big = make_camera("cam_image", 20, h=20, w=24, fps=10.0, seed=14, t0=T0 + 10)
    wide = make_camera(
        "cam_image",
        20,
        h=20,
        w=24,
        fps=10.0,
        seed=15,
        t0=T0 + 20,
        dtype=np.uint16,
        dtype_numpy="<u2",
    )
    huge = make_camera("huge_image", 5, h=64, w=64, fps=10.0, seed=16)
    rd = RunDocs.start()
    camera_stream(rd, [small], name="a")
    camera_stream(rd, [big], name="b")
    camera_stream(rd, [wide], name="c")
    camera_stream(rd, [huge], name="d")
    rd.stop()
    callback = AtomscaleCallback(client, max_frame_bytes=2048, bit_depth=12)
    summary = _run_and_flush(callback, rd)
    callback.close()
    assert summary.rejected_frames == 5 and summary.lost == 5  # too big: not delivered
    assert not [r for r in summary.rheed if r.camera == "huge_image" and r.frames]
    parts = [r for r in summary.rheed if r.camera == "cam_image"]
    assert [r.frames for r in parts] == [20, 40]
    assert summary.shape_changes == 1
    assert parts[1].dtype_changes == 1
    np.testing.assert_array_equal(server.reader.frames(parts[0].data_id), small.frames)
    stored = server.reader.frames(parts[1].data_id)
    np.testing.assert_array_equal(stored[:20], big.frames)
    np.testing.assert_array_equal(stored[20:], (wide.frames >> 4).astype(np.uint8))
    assert parts[1].name.endswith("part 2")


def test_missing_resource_is_counted(server, client, tmp_path):
    cam = make_camera("cam_image", 10, fps=10.0, seed=17)
    rd = RunDocs.start()
    camera_stream(rd, [cam], storage="ad_hdf5", tmp_path=tmp_path)
    rd.docs = [(n, d) for n, d in rd.docs if n != "resource"]
    rd.stop()
    callback = AtomscaleCallback(client)
    summary = _run_and_flush(callback, rd)
    callback.close()
    assert summary.orphan_events == 10  # every datum points at a resource never announced
    assert _rheed(summary, "cam_image").external_failed == 10
    assert summary.lost == 10


def test_repeated_or_malformed_start_leaves_the_running_run_intact(server, client, caplog):
    cam = make_camera("cam_image", 30, fps=10.0, seed=18)
    rd = RunDocs.start()
    camera_stream(rd, [cam])
    rd.stop()
    start = rd.docs[0][1]
    rd.docs.insert(10, ("start", dict(start)))  # the same run's start again: ignored, counted
    rd.docs.insert(20, ("start", {"time": T0}))  # no uid: rejected as an error
    callback = AtomscaleCallback(client)
    summary = _run_and_flush(callback, rd)
    callback.close()
    assert len(callback.summaries) == 1 and summary.exit_status == "success"
    assert summary.duplicate_starts == 1 and callback.counters.duplicate_starts == 1
    assert summary.errors == 1 and summary.orphan_events == 0
    assert "no valid uid" in summary.error_messages[0]
    assert "start document repeated" in caplog.text
    assert "repeated start document" in summary.text()
    _assert_frames_stored(server, _rheed(summary, "cam_image"), cam, 20)
