"""The camera IOC over Channel Access: areaDetector PVs, acquisition modes, bad input, error state."""

from __future__ import annotations

import numpy as np
import pytest
from caproto import ChannelType
from caproto.sync.client import ErrorResponseReceived
from plugins.ioc_fixtures import (
    acquire_one,
    ca_env,
    ca_read,
    ca_value,
    ca_write,
    reset_camera,
    wait_for,
)

AD_PVS = [
    "cam1:Acquire", "cam1:Acquire_RBV", "cam1:AcquireTime_RBV", "cam1:AcquirePeriod_RBV",
    "cam1:ImageMode_RBV", "cam1:NumImages_RBV", "cam1:NumExposures_RBV", "cam1:TriggerMode_RBV",
    "cam1:ArrayCounter_RBV", "cam1:DetectorState_RBV", "cam1:DataType_RBV", "cam1:SizeX_RBV",
    "cam1:SizeY_RBV", "cam1:ArraySize0_RBV", "cam1:ArraySize1_RBV", "cam1:ArraySize2_RBV",
    "cam1:Manufacturer_RBV", "cam1:Model_RBV", "cam1:ArrayCallbacks_RBV", "cam1:PortName_RBV",
    "image1:ArrayData", "image1:UniqueId_RBV", "image1:ArrayCounter_RBV", "image1:ArraySize0_RBV",
    "image1:ArraySize1_RBV", "image1:EnableCallbacks_RBV", "image1:BlockingCallbacks_RBV",
    "image1:NDArrayPort_RBV", "image1:NDimensions_RBV", "image1:PluginType_RBV",
]  # fmt: skip


@pytest.fixture
def cam(camera_ioc):
    reset_camera(camera_ioc.prefix)
    yield camera_ioc
    reset_camera(camera_ioc.prefix)


def test_serves_areadetector_pvs(cam):
    for suffix in AD_PVS:
        ca_read(cam.pv(suffix))
    assert ca_value(cam.pv("image1:PluginType_RBV")) == "NDPluginStdArrays"
    assert ca_value(cam.pv("image1:ArraySize0_RBV")) == 640
    assert ca_value(cam.pv("image1:ArraySize1_RBV")) == 480
    assert ca_value(cam.pv("cam1:DataType_RBV")) == "UInt8"
    assert (
        ca_read(cam.pv("cam1:AcquirePeriod_RBV"), data_type=ChannelType.CTRL_DOUBLE).metadata.units
        == b"s"
    )


def test_single_and_multiple_modes_publish_counted_frames_then_acquire_done(cam):
    start = ca_value(cam.pv("image1:ArrayCounter_RBV"))
    ca_write(cam.pv("cam1:ImageMode"), 0)  # Single
    ca_write(cam.pv("cam1:Acquire"), 1)
    # wait for the frame itself: right after the put, Acquire_RBV may still read the old "Done"
    assert wait_for(lambda: ca_value(cam.pv("image1:ArrayCounter_RBV")) >= start + 1, timeout=5)
    assert wait_for(lambda: ca_value(cam.pv("cam1:Acquire_RBV")) == "Done", timeout=5)
    assert ca_value(cam.pv("image1:ArrayCounter_RBV")) == start + 1
    ca_write(cam.pv("cam1:ImageMode"), 1)  # Multiple
    ca_write(cam.pv("cam1:NumImages"), 5)
    ca_write(cam.pv("cam1:AcquirePeriod"), 0.01)
    ca_write(cam.pv("cam1:Acquire"), 1)
    assert wait_for(lambda: ca_value(cam.pv("image1:ArrayCounter_RBV")) >= start + 6, timeout=5)
    assert wait_for(lambda: ca_value(cam.pv("cam1:Acquire_RBV")) == "Done", timeout=5)
    assert ca_value(cam.pv("image1:ArrayCounter_RBV")) == start + 6
    assert ca_value(cam.pv("image1:UniqueId_RBV")) == start + 6
    frame = ca_read(cam.pv("image1:ArrayData")).data
    assert np.asarray(frame).size == 640 * 480


def test_frame_and_counters_share_the_capture_timestamp(cam):
    acquire_one(cam.pv)
    stamps = {
        s: ca_read(cam.pv(s), data_type="time").metadata.timestamp
        for s in (
            "image1:ArrayData",
            "image1:ArrayCounter_RBV",
            "image1:UniqueId_RBV",
            "cam1:ArrayCounter_RBV",
        )
    }
    assert len(set(stamps.values())) == 1, stamps


def test_invalid_configuration_is_refused_with_error_state_and_ioc_keeps_serving(cam):
    for suffix, value in (("cam1:SizeX", 0), ("cam1:SizeY", 100000), ("cam1:AcquirePeriod", 0.0),
                          ("cam1:AcquirePeriod", -1.0), ("cam1:DataType", 5)):  # fmt: skip
        with pytest.raises(ErrorResponseReceived):
            ca_write(cam.pv(suffix), value)
        assert ca_value(cam.pv("cam1:DetectorState_RBV")) == "Error"
        assert "refused" in ca_value(cam.pv("cam1:StatusMessage_RBV")) or "DataType" in ca_value(
            cam.pv("cam1:StatusMessage_RBV")
        )
    assert ca_value(cam.pv("cam1:SizeX_RBV")) == 640
    assert ca_value(cam.pv("cam1:AcquirePeriod_RBV")) == pytest.approx(1 / 30)
    # too-fast periods are clamped like a driver's minimum period
    ca_write(cam.pv("cam1:AcquirePeriod"), 1e-6)
    assert ca_value(cam.pv("cam1:AcquirePeriod_RBV")) == pytest.approx(1 / 2000)
    # a good acquisition clears the error state
    ca_write(cam.pv("cam1:AcquirePeriod"), 1 / 30)
    ca_write(cam.pv("cam1:ImageMode"), 0)
    counter = ca_value(cam.pv("image1:ArrayCounter_RBV"))
    ca_write(cam.pv("cam1:Acquire"), 1)
    assert wait_for(lambda: ca_value(cam.pv("image1:ArrayCounter_RBV")) > counter, timeout=5)
    assert wait_for(lambda: ca_value(cam.pv("cam1:Acquire_RBV")) == "Done", timeout=5)
    assert ca_value(cam.pv("cam1:DetectorState_RBV")) == "Idle"


def test_out_of_range_and_wrong_type_writes_are_refused(cam):
    for suffix, value in (("cam1:NumImages", -3), ("sim:MonolayerPeriod", 0.0), ("sim:RotationRPM", 1e4),
                          ("cam1:ImageMode", 7), ("sim:MonolayerPeriod", "fast")):  # fmt: skip
        with pytest.raises((ErrorResponseReceived, ValueError, TypeError)):
            ca_write(cam.pv(suffix), value)
    assert ca_value(cam.pv("sim:MonolayerPeriod")) == pytest.approx(1.0)
    assert ca_value(cam.pv("cam1:ImageMode_RBV")) == "Continuous"


def test_smaller_frames_at_runtime_and_sizes_published(cam):
    ca_write(cam.pv("cam1:SizeX"), 320)
    ca_write(cam.pv("cam1:SizeY"), 240)
    try:
        ca_write(cam.pv("cam1:ImageMode"), 0)
        ca_write(cam.pv("cam1:Acquire"), 1)
        assert wait_for(lambda: ca_value(cam.pv("image1:ArraySize0_RBV")) == 320, timeout=5)
        assert ca_value(cam.pv("image1:ArraySize1_RBV")) == 240
        assert wait_for(lambda: ca_value(cam.pv("cam1:Acquire_RBV")) == "Done", timeout=5)
        assert np.asarray(ca_read(cam.pv("image1:ArrayData")).data).size == 320 * 240
    finally:
        ca_write(cam.pv("cam1:SizeX"), 640)
        ca_write(cam.pv("cam1:SizeY"), 480)
        ca_write(cam.pv("cam1:ImageMode"), 0)
        ca_write(cam.pv("cam1:Acquire"), 1)  # sizes are published with the next frame
        assert wait_for(lambda: ca_value(cam.pv("image1:ArraySize0_RBV")) == 640, timeout=5)


def test_sixteen_bit_camera_from_factory(ioc_factory):
    handle = ioc_factory("rheed_camera", "DEEP:", width=64, height=48, bit_depth=12, fps=50)
    with ca_env(handle):
        assert ca_value(handle.pv("image1:DataType_RBV")) == "UInt16"
        acquire_one(handle.pv)
        data = (
            np.asarray(ca_read(handle.pv("image1:ArrayData")).data).astype(np.int16).view(np.uint16)
        )
    assert data.size == 64 * 48
    assert 255 < data.max() <= 4095
