"""Only the RHEED camera streams, and a run can be left out: a real RunEngine with a camera, a
non-RHEED 2-D detector and a 4096-bin spectrum beside it, read back from the local server."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from bluesky.plans import count
from ophyd import Component as Cpt
from ophyd import Device, Signal

from atomscale_bluesky.callback import AtomscaleCallback

from .devices import MemoryCamera


class ArraySignal(Signal):
    """A signal read as an array of a fixed shape (a detector image or a spectrum)."""

    def __init__(self, *args: Any, shape: tuple[int, ...], **kwargs: Any) -> None:
        rng = np.random.default_rng(len(shape))
        super().__init__(*args, value=rng.integers(0, 1000, shape).astype(np.uint16), **kwargs)
        self.shape = shape

    def describe(self) -> dict[str, Any]:
        desc = super().describe()
        desc[self.name].update(dtype="array", shape=list(self.shape), dtype_numpy="<u2")
        return desc


class Diffractometer(Device):
    """A 2-D detector that is not the RHEED camera (an area of counts)."""

    counts = Cpt(ArraySignal, shape=(64, 64), kind="hinted")


class Spectrometer(Device):
    spectrum = Cpt(ArraySignal, shape=(4096,), kind="hinted")


def _upload(client, RE, devices: list[Any], **options: Any) -> list[Any]:
    callback = AtomscaleCallback(client, **{"stop_grace_s": 0.0, **options})
    token = RE.subscribe(callback)
    try:
        RE(count(devices, num=5))
        RE(count(devices, num=3), atomscale=False)  # an alignment scan: never uploaded
    finally:
        RE.unsubscribe(token)
    assert callback.flush(60)
    callback.close()
    assert callback.counters.runs_left_out == 1
    return callback.summaries


@pytest.mark.parametrize("cameras", [None, "cam", ["cam_image"]])
def test_only_the_camera_streams_beside_a_detector_image_and_a_spectrum(
    server, client, RE, cameras
):
    cam = MemoryCamera(name="cam")
    xrd = Diffractometer(name="xrd")
    mca = Spectrometer(name="mca")
    (summary,) = _upload(client, RE, [cam, xrd, mca], cameras=cameras)
    assert len(cam.image.produced) == 5 + 3  # the alignment scan ran, and was left out
    assert summary.errors == 0, summary.error_messages
    (rheed,) = summary.rheed
    assert rheed.camera == "cam_image" and rheed.frames == 5
    assert summary.lost == 0 and summary.rejected_frames == 0 and summary.status == "complete"
    assert set(summary.skipped_keys) >= {"xrd_counts", "mca_spectrum"}
    assert summary.skipped_arrays == 2 * 5
    assert "10 array readings of other devices skipped" in summary.text()
    if cameras is None:
        assert "areaDetector-like" in summary.skipped_keys["xrd_counts"]
    else:
        assert "not one of the cameras named" in summary.skipped_keys["mca_spectrum"]
    np.testing.assert_array_equal(
        server.reader.frames(rheed.data_id), np.stack([f for _, f in cam.image.produced[:5]])
    )
    assert set(summary.timeseries.channels) == {"cam_temperature"}


def test_a_run_filter_leaves_runs_out_and_the_start_key_wins_over_it(server, client, RE):
    cam = MemoryCamera(name="cam")
    callback = AtomscaleCallback(
        client, stop_grace_s=0.0, run_filter=lambda start: start.get("purpose") != "alignment"
    )
    token = RE.subscribe(callback)
    try:
        RE(count([cam], num=2), purpose="alignment")
        RE(count([cam], num=3), purpose="growth")
        RE(count([cam], num=4), purpose="alignment", atomscale={"upload": True})
        RE(count([cam], num=2), purpose="growth", atomscale={"upload": False})
        with pytest.raises(LookupError, match="was not uploaded"):
            callback.wait(timeout=60)  # the latest run was left out: no summary will come
    finally:
        RE.unsubscribe(token)
    assert callback.flush(60)
    callback.close()
    assert [s.frames for s in callback.summaries] == [3, 4]
    assert callback.counters.runs_left_out == 2 and callback.counters.orphan_events == 0
    for summary in callback.summaries:
        assert summary.errors == 0 and summary.lost == 0
        (rheed,) = summary.rheed
        assert len(server.reader.frames(rheed.data_id)) == rheed.frames


@pytest.mark.parametrize(
    ("start", "expected"),
    [
        ({"atomscale": False}, False),
        ({"atomscale": {"upload": False}}, False),
        ({"atomscale": "no"}, False),
        ({"atomscale": True, "purpose": "alignment"}, True),
        ({"atomscale": {"upload": "yes"}, "purpose": "alignment"}, True),
        ({"purpose": "alignment"}, False),  # the filter decides
        ({"atomscale": {"sample": "x"}, "purpose": "growth"}, True),  # no upload key: filter
    ],
)
def test_the_start_key_then_the_filter_decide(start, expected):
    from atomscale_bluesky.callback.run_selection import run_choice

    upload, why = run_choice(start, lambda doc: doc.get("purpose") != "alignment")
    assert upload is expected and why


def test_a_filter_that_raises_uploads_the_run_and_says_why():
    from atomscale_bluesky.callback.run_selection import run_choice

    upload, why = run_choice({}, lambda doc: doc["missing"])
    assert upload and "run_filter raised KeyError" in why
