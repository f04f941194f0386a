"""ophyd devices against the simulated IOCs: connection, descriptions, units, SingleTrigger count."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from bluesky.plans import count

from atomscale_bluesky.devices import RheedImageSignal
from atomscale_bluesky.plans import count_growth


def test_camera_describes_uint8_frames_of_the_real_shape(camera):
    desc = camera.describe()
    image = desc["rheed_image"]
    assert image["dtype"] == "array"
    assert image["dtype_numpy"] == "|u1"
    assert image["shape"] == [480, 640]
    assert "lower_ctrl_limit" not in image
    assert set(desc) == {"rheed_image", "rheed_array_counter", "rheed_unique_id"}
    config = camera.describe_configuration()
    assert config["rheed_acquire_period"]["units"] == "s"
    assert {"rheed_width", "rheed_height", "rheed_data_type"} <= set(config)
    json.dumps(desc)
    json.dumps(config)
    assert camera.read_configuration()["rheed_acquire_period"]["value"] == pytest.approx(1 / 30)
    frame = camera.image.get()
    assert frame.shape == (480, 640) and frame.dtype == np.uint8


def test_sensors_every_reading_has_units(sensors):
    desc = sensors.describe()
    assert len(desc) >= 12
    for key, entry in desc.items():
        assert "units" in entry and entry["units"] is not None, key
    assert desc["growth_substrate_temperature"]["units"] == "degC"
    assert desc["growth_pressure"]["units"] == "Torr"
    assert desc["growth_rotation_rpm"]["units"] == "rpm"
    assert desc["growth_azimuth"]["units"] == "deg"
    assert desc["growth_growth_rate"]["units"] == "ML/s"
    assert desc["growth_ga_temperature"]["precision"] == 1
    assert sensors.read()["growth_ga_temperature"]["value"] == pytest.approx(900, abs=5)


def test_single_trigger_count_takes_a_new_frame_per_event(RE, camera, sensors):
    docs = []
    RE(
        count_growth(camera, sensors, 4, md={"sample": "GaAs-001", "project_id": "p1"}),
        lambda n, d: docs.append((n, d)),
    )
    start = next(d for n, d in docs if n == "start")
    assert start["sample"] == "GaAs-001" and start["project_id"] == "p1"
    descriptor = next(d for n, d in docs if n == "descriptor")
    assert descriptor["data_keys"]["rheed_image"]["shape"] == [480, 640]
    events = [d for n, d in docs if n == "event"]
    assert len(events) == 4
    counters = [e["data"]["rheed_array_counter"] for e in events]
    assert counters == list(range(counters[0], counters[0] + 4))
    for e in events:
        assert e["data"]["rheed_image"].shape == (480, 640)
        assert e["timestamps"]["rheed_image"] == e["timestamps"]["rheed_array_counter"]


def test_plain_bluesky_count_works_too(RE, camera):
    uids = []
    RE(count([camera], num=2), lambda n, d: uids.append(n))
    assert uids.count("event") == 2


def test_image_signal_widens_sixteen_bit_waveforms(camera):
    """CA carries UInt16 frames as signed shorts; the signal restores uint16 and the 2-D shape."""
    signal: RheedImageSignal = camera.image
    flat = np.arange(480 * 640, dtype=np.int64) % 4096 + 60000
    original_type = camera.data_type.get
    camera.data_type.get = lambda **kw: "UInt16"  # type: ignore[method-assign]
    try:
        shaped = signal.shape_frame(flat.astype(np.uint16).view(np.int16))
        assert signal.describe()["rheed_image"]["dtype_numpy"] == "<u2"
    finally:
        camera.data_type.get = original_type  # type: ignore[method-assign]
    assert shaped.dtype == np.uint16 and shaped.shape == (480, 640)
    assert np.array_equal(shaped.ravel(), flat.astype(np.uint16))


CAPROTO_LAYER_CHECK = textwrap.dedent(
    """
    import json, os
    os.environ["OPHYD_CONTROL_LAYER"] = "caproto"
    from atomscale_bluesky.devices import RheedCamera, GrowthSensors, connect_all
    cam = RheedCamera("RHEED:", name="rheed"); sens = GrowthSensors("GROWTH:", name="growth")
    connect_all(cam, sens)
    frame = cam.image.get()
    print(json.dumps({"describe": cam.describe(), "sensors": sens.describe(),
                      "shape": list(frame.shape), "dtype": str(frame.dtype)}))
    """
)


def test_caproto_control_layer_reads_and_describes(camera_ioc, camera):
    """The caproto layer returns int16 CHAR data and bytes ctrl limits; the device hides both."""
    out = subprocess.run(
        [sys.executable, "-c", CAPROTO_LAYER_CHECK],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    image = result["describe"]["rheed_image"]
    assert image["dtype_numpy"] == "|u1" and image["shape"] == [480, 640]
    assert result["shape"] == [480, 640] and result["dtype"] == "uint8"
    assert result["sensors"]["growth_substrate_temperature"]["units"] == "degC"
