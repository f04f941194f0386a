"""Pixel values end to end: a real RunEngine reads stock-ophyd-style devices (frames plus the
camera's configuration signals, as a stock areaDetector device names them), the callback
uploads to the local server, and the stored pixels are compared exactly."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pytest
from bluesky.plans import count
from ophyd import Component as Cpt
from ophyd import Device, Signal
from ophyd.sim import EnumSignal

from atomscale_bluesky.callback import AtomscaleCallback
from atomscale_bluesky.callback.pixel_format import AD_DATA_TYPES

T0 = 1_700_000_000.0
FPS = 10.0
H, W = 16, 20
FORMATS = ["Mono8", "Mono12", "Mono12Packed", "Mono16"]


class FrameList(Signal):
    """Each read is the next of the given frames, stamped with its hardware time (as an IOC's
    monitor would), described by the frames' own dtype (what a client received, not what the
    camera declares)."""

    def __init__(self, *args: Any, frames: np.ndarray, **kwargs: Any) -> None:
        super().__init__(*args, value=frames[0], **kwargs)
        self.frames = frames
        self.reads = 0

    def get(self, **kwargs: Any) -> np.ndarray:
        frame = self.frames[self.reads]
        self._readback = frame
        self._metadata["timestamp"] = T0 + self.reads / FPS
        self.reads += 1
        return frame

    def describe(self) -> dict[str, Any]:
        desc = super().describe()
        desc[self.name].update(dtype_numpy=self.frames.dtype.str)
        return desc


class StockCam(Device):
    """The configuration signals of a stock areaDetector cam (``<det>_cam_data_type``...)."""

    data_type = Cpt(EnumSignal, value="UInt16", enum_strings=list(AD_DATA_TYPES), kind="config")
    pixel_format = Cpt(EnumSignal, value="Mono12", enum_strings=FORMATS, kind="config")


def _camera(frames: np.ndarray, data_type: str | None, pixel_format: str | None) -> Device:
    """A detector ``det`` reading ``frames``; its cam configures what is given (None: absent)."""
    attrs = [n for n, v in (("data_type", data_type), ("pixel_format", pixel_format)) if v]

    class Detector(Device):
        image = Cpt(FrameList, frames=frames, kind="hinted")
        cam = Cpt(StockCam, "", kind="config", configuration_attrs=attrs)

    det = Detector(name="det")
    if data_type:
        det.cam.data_type.put(data_type)
    if pixel_format:
        det.cam.pixel_format.put(pixel_format)
    return det


def _run(RE, client, det: Device, **options: Any):
    callback = AtomscaleCallback(client, **options)
    RE.subscribe(callback)
    RE(count([det], num=len(det.image.frames)))
    assert callback.flush(60)
    callback.close()
    (summary,) = callback.summaries
    assert summary.errors == 0, summary.error_messages
    (rheed,) = summary.rheed
    assert rheed.frames == len(det.image.frames) and summary.lost == 0
    return summary, rheed


def _guess_warnings(caplog) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.WARNING and "nothing declares the pixel scale" in r.getMessage()
    ]


# -- float frames ---------------------------------------------------------------------------------


def _float_frames(n: int) -> np.ndarray:
    rng = np.random.default_rng(1)
    frames = rng.uniform(0.0, 200.0, size=(n, H, W))
    for dark in (0, 7, 15):  # dark frames, the first among them: their maximum stays below 1
        frames[dark] = rng.uniform(0.0, 0.9, size=(H, W))
    return frames


def test_float_frames_keep_their_relative_brightness(server, client, RE, caplog):
    frames = _float_frames(24)
    summary, rheed = _run(RE, client, _camera(frames, None, None))
    stored = server.reader.frames(rheed.data_id)
    np.testing.assert_array_equal(stored, np.floor(frames + 0.5).astype(np.uint8))
    assert stored[[0, 7, 15]].max() <= 1 and stored.max() >= 190  # dark frames stay dark
    pixels = rheed.pixels
    assert (pixels.scale_low, pixels.scale_high) == (0, 255) and pixels.scale_guessed
    assert pixels.clipped_frames == 0 and pixels.source_dtype == "<f8"
    assert "scale [0, 255] guessed from the first 10 frames" in summary.text()
    assert "declare pixel_range" in summary.text()
    assert len(_guess_warnings(caplog)) == 1


def test_float_frames_follow_a_declared_range(server, client, RE, caplog):
    frames = _float_frames(24)
    frames[3, 0, 0] = 1200.0  # above the declared range: clipped, counted
    summary, rheed = _run(RE, client, _camera(frames, None, None), pixel_range=(0.0, 1000.0))
    stored = server.reader.frames(rheed.data_id)
    expected = np.floor(np.minimum(frames, 1000.0) * (255.0 / 1000.0) + 0.5).astype(np.uint8)
    np.testing.assert_array_equal(stored, expected)
    assert stored[3, 0, 0] == 255
    assert rheed.pixels.scale_source == "option pixel_range" and not rheed.pixels.scale_guessed
    assert rheed.pixels.clipped_frames == 1
    assert "1 frame clipped to [0, 1000]" in summary.text()
    assert not _guess_warnings(caplog)


# -- 16-bit data delivered as int16 ---------------------------------------------------------------


def _saturated_u16(n: int) -> np.ndarray:
    rng = np.random.default_rng(2)
    frames = rng.integers(0, 60000, size=(n, H, W), dtype=np.uint16)
    frames[4] = rng.integers(0, 30000, size=(H, W), dtype=np.uint16)  # one frame all below 2**15
    frames[np.arange(n) != 4, 5:7, 8:11] = 65535  # the specular spot saturates in the others
    return frames


@pytest.mark.parametrize("declared_by", ["configuration", "options"])
def test_int16_delivered_saturated_frames_with_declared_uint16_store_full_scale(
    server, client, RE, caplog, declared_by
):
    u16 = _saturated_u16(24)
    delivered = u16.view(np.int16)  # how Channel Access carries them: 65535 arrives as -1
    assert delivered[0, 5, 8] == -1
    if declared_by == "configuration":
        det = _camera(delivered, "UInt16", "Mono16")
        summary, rheed = _run(RE, client, det)
    else:
        det = _camera(delivered, None, None)
        summary, rheed = _run(RE, client, det, data_type="UInt16", bit_depth=16)
    stored = server.reader.frames(rheed.data_id)
    np.testing.assert_array_equal(stored, (u16 >> 8).astype(np.uint8))
    assert np.all(np.delete(stored, 4, axis=0)[:, 5:7, 8:11] == 255)
    pixels = rheed.pixels
    assert pixels.source_dtype == "<i2" and pixels.read_as == "<u2" and not pixels.read_as_guessed
    assert pixels.reinterpreted_frames == int((u16 >= 32768).any(axis=(1, 2)).sum())
    assert pixels.bit_depth == 16 and not pixels.bit_depth_guessed
    if declared_by == "configuration":
        assert pixels.read_as_source == "configuration det_cam_data_type=UInt16"
        assert pixels.bit_depth_source == "configuration det_cam_pixel_format=Mono16"
    else:
        assert pixels.read_as_source == "option data_type"
        assert pixels.bit_depth_source == "option bit_depth"
    assert f"<i2 read as <u2 (declared: {pixels.read_as_source}" in summary.text()
    assert not _guess_warnings(caplog)


# -- 12-bit data in uint16 ------------------------------------------------------------------------


def _twelve_bit(n: int) -> np.ndarray:
    rng = np.random.default_rng(3)
    frames = rng.integers(0, 4096, size=(n, H, W), dtype=np.uint16)
    frames[:, 0, 0] = 4095  # full scale in every frame
    return frames


def test_12_bit_frames_with_pixel_format_mono12_store_full_scale(server, client, RE, caplog):
    frames = _twelve_bit(24)
    summary, rheed = _run(RE, client, _camera(frames, "UInt16", "Mono12"))
    stored = server.reader.frames(rheed.data_id)
    np.testing.assert_array_equal(stored, (frames >> 4).astype(np.uint8))
    assert np.all(stored[:, 0, 0] == 255)
    pixels = rheed.pixels
    assert pixels.bit_depth == 12 and not pixels.bit_depth_guessed
    assert pixels.bit_depth_source == "configuration det_cam_pixel_format=Mono12"
    assert pixels.read_as is None and pixels.notes() == []
    assert not _guess_warnings(caplog)
    assert "pixels of det_image" not in summary.text()


def test_12_bit_frames_without_declaration_are_guessed_with_a_warning(server, client, RE, caplog):
    frames = _twelve_bit(24)
    frames[15, 3, 3] = 5000  # brighter than the depth guessed from the first frames: clipped
    summary, rheed = _run(RE, client, _camera(frames, None, None))
    stored = server.reader.frames(rheed.data_id)
    np.testing.assert_array_equal(stored, (np.minimum(frames, 4095) >> 4).astype(np.uint8))
    assert np.all(stored[:, 0, 0] == 255) and stored[15, 3, 3] == 255
    (warning,) = _guess_warnings(caplog)
    assert "assuming 12-bit [0, 4095], guessed from the first 10 frames (max 4095)" in warning
    assert "declare bit_depth" in warning
    pixels = rheed.pixels
    assert pixels.bit_depth == 12 and pixels.bit_depth_guessed and pixels.clipped_frames == 1
    text = summary.text()
    assert "pixels of det_image: 12-bit guessed from the first 10 frames (max 4095)" in text
    assert "declare bit_depth" in text and "1 frame clipped to [0, 4095]" in text


@pytest.mark.parametrize("storage", ["stream", "inline"])
def test_a_short_run_waiting_for_its_guess_is_converted_at_its_end(
    server, client, tmp_path, storage
):
    """Fewer frames than a guess looks at (ophyd-async stream datums, or inline events): they
    wait for the run's end, and are stored by the depth guessed from all of them."""
    from .docs import RunDocs, camera_stream, make_camera

    cam = make_camera("cam_image", 6, seed=4, dtype=np.uint16, dtype_numpy="<u2")
    cam.frames[:, 0, 0] = 4095
    rd = RunDocs.start()
    camera_stream(rd, [cam], tmp_path=tmp_path, storage=storage)
    rd.stop()
    callback = AtomscaleCallback(client, fps=20.0)
    rd.feed(callback)
    assert callback.flush(60)
    callback.close()
    (summary,) = callback.summaries
    (rheed,) = summary.rheed
    assert summary.errors == 0 and summary.lost == 0 and rheed.frames == 6
    stored = server.reader.frames(rheed.data_id)
    np.testing.assert_array_equal(stored, (cam.frames >> 4).astype(np.uint8))
    assert rheed.pixels.bit_depth == 12 and rheed.pixels.bit_depth_guessed
    assert "guessed from the first 6 frames (max 4095)" in summary.text()
