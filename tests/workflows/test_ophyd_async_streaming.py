"""ophyd-async devices -> RunEngine monitors -> AtomscaleCallback -> local server, every frame kept."""

from __future__ import annotations

import numpy as np
import pytest
from bluesky import plan_stubs as bps
from bluesky import preprocessors as bpp

pytest.importorskip("ophyd_async")

from atomscale_bluesky.callback import AtomscaleCallback  # noqa: E402
from atomscale_bluesky.client import AtomscaleClient  # noqa: E402


def test_ophyd_async_monitor_run_streams_every_frame_with_ioc_timestamps(
    RE, camera_ioc, sensors_ioc, local_server, tmp_path
):
    from ophyd_async.core import init_devices

    from atomscale_bluesky.devices.async_devices import (
        GrowthSensorsAsync,
        ImageMode,
        RheedCameraAsync,
    )

    with init_devices():
        rheed = RheedCameraAsync(camera_ioc.prefix)
        growth = GrowthSensorsAsync(sensors_ioc.prefix)

    images: list[tuple[float, np.ndarray]] = []
    empty_readings = 0  # ArrayData before the camera published an image: no frame
    run_start: list[float] = []
    temperatures: list[tuple[float, float]] = []

    def truth(name, doc):
        nonlocal empty_readings
        if name == "start":
            run_start.append(doc["time"])
        if name == "event":
            if "rheed-image" in doc["data"]:
                image = np.asarray(doc["data"]["rheed-image"])
                stamp = doc["timestamps"]["rheed-image"]
                if image.size:
                    images.append((stamp, image))
                else:
                    empty_readings += 1
            if "growth-substrate_temperature" in doc["data"]:
                temperatures.append(
                    (
                        doc["timestamps"]["growth-substrate_temperature"],
                        doc["data"]["growth-substrate_temperature"],
                    )
                )

    def acquire():
        yield from bps.mv(
            rheed.image_mode, ImageMode.CONTINUOUS, rheed.acquire_period_setpoint, 1 / 40
        )
        yield from bps.mv(rheed.acquire, "Acquire")
        yield from bps.sleep(3.0)
        yield from bps.mv(rheed.acquire, "Done")
        yield from bps.sleep(0.3)

    client = AtomscaleClient(  # no clock correction: stored stamps compare exactly below
        api_key=local_server.api_key,
        endpoint=local_server.url,
        spool_dir=tmp_path / "spool",
        clock_sync=False,
    )
    callback = AtomscaleCallback(client, sample="async wafer")
    RE.subscribe(callback)
    RE.subscribe(truth)
    md = {"fps": 40.0, "name": "ophyd-async growth"}
    RE(
        bpp.monitor_during_wrapper(
            bpp.run_wrapper(acquire(), md=md), rheed.monitored + growth.monitored
        )
    )
    callback.close()
    client.close()

    summary = callback.summaries[-1]
    assert summary.errors == 0 and summary.lost == 0, summary.text()
    assert summary.rejected_frames == 0 and summary.empty_frames == empty_readings
    (rheed_summary,) = summary.rheed
    # the monitor's first value may be the IOC's last frame of an earlier acquisition: stamped
    # before the run, it is left out by design (counted as stale, not lost)
    stale = rheed_summary.stale
    assert stale <= 1 and all(t < run_start[0] for t, _ in images[:stale])
    images = images[stale:]
    assert len(images) > 80
    stored = local_server.reader.frames(rheed_summary.data_id)
    height, width = stored.shape[1:]
    assert (height, width) == (480, 640)
    expected = np.stack([frame.reshape(height, width) for _, frame in images])
    np.testing.assert_array_equal(stored, expected)

    chunks = sorted(local_server.reader.chunk_times(rheed_summary.data_id), key=lambda c: c["idx"])
    assert chunks[0].get("clock_offset_ms") is None
    assert chunks[0]["start_unix_ms_utc"] == round(images[0][0] * 1000)

    ts_id = summary.timeseries.data_id
    stamps, values, units = local_server.reader.points(ts_id, "growth-substrate_temperature")
    assert units == "degC"
    np.testing.assert_allclose(values, [v for _, v in temperatures])
    np.testing.assert_allclose(stamps, [t for t, _ in temperatures], rtol=0, atol=1e-6)
