"""Flat (1-D) frames as ophyd-async delivers them over Channel Access: their height and width come
from the camera's ArraySize0/1_RBV monitor streams (held until known) or from ``frame_shapes``."""

from __future__ import annotations

from typing import Any

import numpy as np

from atomscale_bluesky.callback import AtomscaleCallback, camera_uploader

from .docs import T0, CameraSpec, RunDocs, make_camera


def _monitor(rd: RunDocs, key: str, source: str, dtype: str = "integer", shape=None) -> Any:
    """One ophyd-async signal's monitor stream descriptor (one key, its own object)."""
    dk = {"source": source, "dtype": dtype, "shape": shape or [], "object_name": key}
    if dtype == "array":
        dk["dtype_numpy"] = "|u1"
    desc = rd.run.compose_descriptor(
        name=f"{key}_monitor", data_keys={key: dk}, configuration={}, object_keys={key: [key]}
    )
    rd.docs.append(("descriptor", desc.descriptor_doc))
    return desc


def _reading(rd: RunDocs, desc: Any, key: str, value: Any, ts: float, seq: int) -> None:
    event = desc.compose_event(data={key: value}, timestamps={key: ts}, seq_num=seq)
    rd.docs.append(("event", event))


def _size_monitors(rd: RunDocs, device: str, prefix: str, h: int, w: int) -> None:
    for side, pv, value in [("width", "ArraySize0_RBV", w), ("height", "ArraySize1_RBV", h)]:
        desc = _monitor(rd, f"{device}-{side}", f"ca://{prefix}image1:{pv}")
        _reading(rd, desc, f"{device}-{side}", value, T0 - 5, 1)


def _image_monitor(rd: RunDocs, cam: CameraSpec, prefix: str) -> Any:
    n, h, w = cam.frames.shape
    return _monitor(rd, cam.key, f"ca://{prefix}image1:ArrayData", "array", [h * w])


def _flat_frames(rd: RunDocs, desc: Any, cam: CameraSpec, start: int, stop: int) -> None:
    for i in range(start, stop):
        frame = cam.frames[i].reshape(-1)
        _reading(rd, desc, cam.key, frame, float(cam.times[i]), i + 1)


def _run(callback: AtomscaleCallback, rd: RunDocs):
    rd.stop()
    rd.feed(callback)
    assert callback.flush(60)
    callback.close()
    (summary,) = callback.summaries
    return summary


def test_flat_frames_wait_for_their_cameras_size_monitors_then_stream_in_order(server, client):
    cam = make_camera("rheed-image", 50, h=48, w=96, fps=20.0, seed=21)
    rd = RunDocs.start(fps=20.0)
    image = _image_monitor(rd, cam, "RHEED:")
    _flat_frames(rd, image, cam, 0, 30)  # held: no size known yet
    _size_monitors(rd, "other", "OTHER:", 16, 48)  # another camera's size: not ours
    _flat_frames(rd, image, cam, 30, 40)
    _size_monitors(rd, "rheed", "RHEED:", 48, 96)
    _flat_frames(rd, image, cam, 40, 50)
    summary = _run(AtomscaleCallback(client), rd)
    assert summary.errors == 0 and summary.rejected_frames == 0 and summary.lost == 0
    (rheed,) = summary.rheed
    assert rheed.frames == 50 and rheed.frame_shape == (48, 96)
    np.testing.assert_array_equal(server.reader.frames(rheed.data_id), cam.frames)


def test_flat_frames_whose_size_never_comes_are_rejected_and_lost(server, client, caplog):
    cam = make_camera("rheed-image", 12, h=48, w=96, fps=20.0, seed=22)
    rd = RunDocs.start(fps=20.0)
    image = _image_monitor(rd, cam, "RHEED:")
    _reading(rd, image, cam.key, np.zeros(0, np.uint8), T0 - 10, 100)  # no image yet: not a frame
    _flat_frames(rd, image, cam, 0, 12)
    summary = _run(AtomscaleCallback(client), rd)
    assert summary.rejected_frames == 12 and summary.empty_frames == 1
    assert summary.frames == 0 and summary.lost == 12  # not delivered: never "0 lost"
    assert "height and width are unknown" in caplog.text
    assert "12 rejected frames" in summary.text() and "12 lost" in summary.text()


def test_frame_shapes_option_shapes_flat_frames_without_size_readings(server, client):
    cam = make_camera("eco-image", 30, h=20, w=40, fps=20.0, seed=23)
    small = make_camera("tiny-image", 30, h=10, w=12, fps=20.0, seed=24)
    rd = RunDocs.start(fps=20.0)
    image = _image_monitor(rd, cam, "ECO:")
    tiny = _image_monitor(rd, small, "TINY:")  # 120 values: a waveform unless the user says
    _flat_frames(rd, image, cam, 0, 30)
    _flat_frames(rd, tiny, small, 0, 30)
    callback = AtomscaleCallback(client, frame_shapes={"eco-*": (20, 40), "tiny-image": (10, 12)})
    summary = _run(callback, rd)
    assert summary.errors == 0 and summary.lost == 0
    for spec in (cam, small):
        (rheed,) = [r for r in summary.rheed if r.camera == spec.key]
        np.testing.assert_array_equal(server.reader.frames(rheed.data_id), spec.frames)


def test_held_flat_frames_are_bounded_the_oldest_rejected(server, client, monkeypatch):
    cam = make_camera("rheed-image", 30, h=48, w=96, fps=20.0, seed=25)
    monkeypatch.setattr(camera_uploader, "HELD_MAX_BYTES", 4 * 48 * 96)  # room for 4 frames
    rd = RunDocs.start(fps=20.0)
    image = _image_monitor(rd, cam, "RHEED:")
    _flat_frames(rd, image, cam, 0, 10)
    _size_monitors(rd, "rheed", "RHEED:", 48, 96)
    _flat_frames(rd, image, cam, 10, 30)
    summary = _run(AtomscaleCallback(client), rd)
    assert summary.rejected_frames == 6 and summary.lost == 6 and summary.errors == 0
    (rheed,) = summary.rheed
    np.testing.assert_array_equal(server.reader.frames(rheed.data_id), cam.frames[6:])


def test_a_binning_change_mid_run_starts_a_segment_with_the_new_size(server, client):
    small = make_camera("rheed-image", 20, h=48, w=96, fps=20.0, seed=26)
    big = make_camera("rheed-image", 20, h=96, w=192, fps=20.0, seed=27, t0=T0 + 1.0)
    rd = RunDocs.start()
    image = _image_monitor(rd, small, "RHEED:")
    sizes = {
        side: _monitor(rd, f"rheed-{side}", f"ca://RHEED:image1:{pv}")
        for side, pv in (("width", "ArraySize0_RBV"), ("height", "ArraySize1_RBV"))
    }
    _reading(rd, sizes["width"], "rheed-width", 96, T0 - 5, 1)
    _reading(rd, sizes["height"], "rheed-height", 48, T0 - 5, 1)
    _flat_frames(rd, image, small, 0, 20)
    # binning 2 -> 1: the size readings change, then frames four times as large arrive
    _reading(rd, sizes["width"], "rheed-width", 192, T0 + 0.99, 2)
    _reading(rd, sizes["height"], "rheed-height", 96, T0 + 0.99, 2)
    for i in range(20):
        _reading(rd, image, big.key, big.frames[i].reshape(-1), float(big.times[i]), 21 + i)
    summary = _run(AtomscaleCallback(client), rd)
    assert summary.errors == 0 and summary.rejected_frames == 0 and summary.lost == 0
    assert summary.shape_changes == 1
    first, second = summary.rheed
    assert (first.frame_shape, first.frames) == ((48, 96), 20)
    assert (second.frame_shape, second.frames) == ((96, 192), 20)
    np.testing.assert_array_equal(server.reader.frames(first.data_id), small.frames)
    np.testing.assert_array_equal(server.reader.frames(second.data_id), big.frames)
    (chunk,) = server.reader.chunk_times(second.data_id)
    assert chunk["start_unix_ms_utc"] == round(big.times[0] * 1000)


def test_a_larger_flat_frame_of_unknown_size_is_never_cut_into_smaller_frames(server, client):
    small = make_camera("rheed-image", 20, h=48, w=96, fps=20.0, seed=28)
    big = make_camera("rheed-image", 3, h=96, w=192, fps=20.0, seed=29, t0=T0 + 1.0)
    rd = RunDocs.start()
    image = _image_monitor(rd, small, "RHEED:")
    _flat_frames(rd, image, small, 0, 20)
    for i in range(3):
        _reading(rd, image, big.key, big.frames[i].reshape(-1), float(big.times[i]), 21 + i)
    summary = _run(AtomscaleCallback(client, frame_shapes={"rheed-image": (48, 96)}), rd)
    (rheed,) = summary.rheed
    assert rheed.frames == 20 and summary.rejected_frames == 3 and summary.lost == 3
    assert "height and width are unknown" in " ".join(summary.error_messages) or (
        "3 rejected frames" in summary.text()
    )
