"""A stock ophyd ``SingleTrigger + SimDetector`` with an ``ImagePlugin`` streams unmodified.

The image arrives as CA delivers it, a flat ``ArrayData`` waveform; the callback learns height
and width from the plugin's own array-size readings (no ``frame_shapes``). The one line a user
adds makes the plugin's image and sizes readable (ophyd's areaDetector reads nothing by default).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from atomscale_bluesky.callback import AtomscaleCallback

pytestmark = pytest.mark.timeout(300)


def make_detector(prefix: str) -> Any:
    from ophyd import Component as Cpt
    from ophyd.areadetector import ImagePlugin, SimDetector, SingleTrigger

    class RheedDetector(SingleTrigger, SimDetector):
        image = Cpt(ImagePlugin, "image1:")

    det = RheedDetector(prefix, name="rheed")
    det.read_attrs = ["image.array_data", "image.width", "image.height"]  # the image, readable
    det.wait_for_connection()
    return det


def test_ophyd_image_plugin_detector_streams_shaped_frames(RE, stock_camera, local_server, client):
    from bluesky.plans import count

    det = make_detector(stock_camera.prefix)
    callback = AtomscaleCallback(client)
    events: list[dict] = []
    RE.subscribe(callback)
    RE.subscribe(lambda name, doc: events.append(doc), "event")
    try:
        RE(count([det], num=6))
        assert callback.flush(120)
    finally:
        callback.close()
    (summary,) = callback.summaries
    (rheed,) = summary.rheed
    stored = local_server.reader.frames(rheed.data_id)
    produced = np.stack(
        [np.asarray(e["data"]["rheed_image_array_data"], dtype=np.uint8) for e in events]
    ).reshape(-1, 480, 640)
    assert stored.shape == (6, 480, 640)
    np.testing.assert_array_equal(stored, produced)
    assert len({frame.tobytes() for frame in produced}) == 6  # a new IOC frame per trigger
    times = [e["timestamps"]["rheed_image_array_data"] for e in events]  # the IOC's stamps
    offset = 0
    for chunk in local_server.reader.chunk_times(rheed.data_id):
        assert chunk["start_unix_ms_utc"] == int(round(times[offset] * 1000))
        offset += chunk["n_frames"]
    assert summary.lost == 0
