"""The camera's HDF5 file plugin (HDF1:) and pixel format PVs over Channel Access.

Files are real: written by the IOC process with h5py in areaDetector's layout, read back here
(while still open when SWMR is on), and compared with the frames and times the IOC published.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
from caproto.sync.client import ErrorResponseReceived
from plugins.ioc_fixtures import ca_env, ca_read, ca_value, ca_write, wait_for

EPICS_EPOCH_OFFSET = 631152000.0


@pytest.fixture
def mono12(ioc_factory):
    """A 12-bit 64x48 camera at 50 fps, with caproto clients pointed at it."""
    handle = ioc_factory("rheed_camera", "FILES:", width=64, height=48, bit_depth=12, fps=50)
    with ca_env(handle):
        yield handle


def _configure(pv, directory: Path, mode: str, swmr: bool = False, number: int = 0) -> None:
    for suffix, value in (
        ("HDF1:EnableCallbacks", 1),
        ("HDF1:FilePath", str(directory)),
        ("HDF1:FileName", "scan"),
        ("HDF1:FileTemplate", "%s%s_%3.3d.h5"),
        ("HDF1:FileNumber", number),
        ("HDF1:AutoIncrement", 1),
        ("HDF1:FileWriteMode", mode),
        ("HDF1:SWMRMode", 1 if swmr else 0),
    ):
        ca_write(pv(suffix), value)


def _acquire(pv, n: int) -> None:
    ca_write(pv("cam1:NumImages"), n)
    ca_write(pv("cam1:ImageMode"), "Multiple")
    ca_write(pv("cam1:Acquire"), 1)
    assert wait_for(lambda: ca_value(pv("cam1:NumImagesCounter_RBV")) >= n, timeout=30)
    assert wait_for(lambda: ca_value(pv("cam1:Acquire_RBV")) == "Done", timeout=30)


def _read(path: Path):
    with h5py.File(path, "r", swmr=True, locking=False) as f:
        attrs = f["/entry/instrument/NDAttributes"]
        times = (
            attrs["NDArrayEpicsTSSec"][()]
            + EPICS_EPOCH_OFFSET
            + attrs["NDArrayEpicsTSnSec"][()] * 1e-9
        )
        return f["/entry/data/data"][()], times, attrs["NDArrayUniqueId"][()]


def test_pixel_format_and_bit_depth_match_the_frames(mono12):
    pv = mono12.pv
    assert ca_value(pv("cam1:PixelFormat_RBV")) == "Mono12"
    assert ca_value(pv("cam1:PixelSize_RBV")) == "Bpp12"
    assert ca_value(pv("cam1:BitDepth_RBV")) == 12
    assert ca_value(pv("cam1:DataType_RBV")) == "UInt16"
    assert ca_value(pv("cam1:ColorMode_RBV")) == "Mono"
    with pytest.raises(ErrorResponseReceived):
        ca_write(pv("cam1:PixelFormat"), "Mono8")  # the sensor's format is fixed
    assert ca_value(pv("cam1:PixelFormat_RBV")) == "Mono12"


def test_stream_mode_writes_every_frame_with_its_ioc_time(mono12, tmp_path):
    pv = mono12.pv
    _configure(pv, tmp_path, "Stream", swmr=True)
    ca_write(pv("HDF1:NumCapture"), 5)
    assert ca_value(pv("HDF1:FilePathExists_RBV")) == "Yes"
    ca_write(pv("HDF1:Capture"), 1)
    assert ca_value(pv("HDF1:Capture_RBV")) == "Capture"
    name = Path(ca_value(pv("HDF1:FullFileName_RBV")))
    assert name == tmp_path / "scan_000.h5" and ca_value(pv("HDF1:FileNumber_RBV")) == 1
    stamps = []
    for _ in range(5):  # frame by frame: the file grows while it is open (SWMR)
        _acquire(pv, 1)
        image = ca_read(pv("image1:ArrayData"), data_type="time")
        stamps.append(image.metadata.timestamp)
        assert wait_for(lambda: ca_value(pv("HDF1:NumCaptured_RBV")) == len(stamps))
        frames, times, ids = _read(name)
        assert len(frames) == len(stamps)
        last = np.asarray(image.data).astype(np.int16).view(np.uint16).reshape(48, 64)
        np.testing.assert_array_equal(frames[-1], last)
    assert wait_for(lambda: ca_value(pv("HDF1:Capture_RBV")) == "Done")  # NumCapture reached
    frames, times, ids = _read(name)
    assert frames.shape == (5, 48, 64) and frames.dtype == np.uint16
    assert 255 < int(frames.max()) < 4096  # Mono12 values
    np.testing.assert_allclose(times, stamps, atol=1e-6)
    assert np.all(np.diff(ids) == 1)


def test_capture_mode_writes_on_stop_and_single_mode_one_file_per_frame(mono12, tmp_path):
    pv = mono12.pv
    _configure(pv, tmp_path, "Capture", number=7)
    ca_write(pv("HDF1:NumCapture"), 0)
    ca_write(pv("HDF1:Capture"), 1)
    _acquire(pv, 4)
    assert ca_value(pv("HDF1:NumCaptured_RBV")) == 4
    assert not (tmp_path / "scan_007.h5").exists()  # buffered until capture stops
    ca_write(pv("HDF1:Capture"), 0)
    frames, _, _ = _read(tmp_path / "scan_007.h5")
    assert frames.shape == (4, 48, 64)
    _configure(pv, tmp_path / "single", "Single", number=0)
    ca_write(pv("HDF1:CreateDirectory"), -1)
    ca_write(pv("HDF1:FilePath"), str(tmp_path / "single"))
    _acquire(pv, 3)
    assert wait_for(lambda: len(list((tmp_path / "single").iterdir())) == 3)
    assert wait_for(lambda: ca_value(pv("HDF1:NumCaptured_RBV")) == 1)
    names = sorted(p.name for p in (tmp_path / "single").iterdir())
    assert names == ["scan_000.h5", "scan_001.h5", "scan_002.h5"]
    assert all(len(_read(tmp_path / "single" / n)[0]) == 1 for n in names)


def test_unwritable_path_is_reported_and_the_ioc_keeps_serving(mono12, tmp_path):
    pv = mono12.pv
    missing = tmp_path / "no" / "such" / "dir"
    _configure(pv, missing, "Stream")
    assert ca_value(pv("HDF1:FilePathExists_RBV")) == "No"
    ca_write(pv("HDF1:Capture"), 1)
    _acquire(pv, 2)
    assert wait_for(lambda: ca_value(pv("HDF1:WriteStatus")) == "Write error")
    assert "dir" in ca_value(pv("HDF1:WriteMessage"))
    ca_write(pv("HDF1:Capture"), 0)
    _configure(pv, tmp_path, "Stream", number=3)
    ca_write(pv("HDF1:NumCapture"), 2)
    ca_write(pv("HDF1:Capture"), 1)
    _acquire(pv, 2)
    assert wait_for(lambda: ca_value(pv("HDF1:Capture_RBV")) == "Done")
    assert ca_value(pv("HDF1:WriteStatus")) == "Write OK"
    assert _read(tmp_path / "scan_003.h5")[0].shape == (2, 48, 64)


def test_tiff_plugin_writes_one_file_per_frame_with_its_time_and_id(mono12, tmp_path):
    import tifffile

    pv = mono12.pv
    for suffix, value in (
        ("TIFF1:EnableCallbacks", 1),
        ("TIFF1:FilePath", str(tmp_path)),
        ("TIFF1:FileName", "img"),
        ("TIFF1:FileNumber", 0),
        ("TIFF1:FileWriteMode", "Stream"),
        ("TIFF1:NumCapture", 3),
        ("TIFF1:Capture", 1),
    ):
        ca_write(pv(suffix), value)
    _acquire(pv, 3)
    assert wait_for(lambda: ca_value(pv("TIFF1:Capture_RBV")) == "Done")
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["img_000000.tiff", "img_000001.tiff", "img_000002.tiff"]
    ids, times = [], []
    for name in names:
        with tifffile.TiffFile(tmp_path / name) as tif:
            page = tif.pages[0]
            pixels = page.asarray()
            assert pixels.shape == (48, 64) and pixels.dtype == np.uint16 and pixels.max() < 4096
            ids.append(page.tags[65001].value)
            times.append(page.tags[65002].value + page.tags[65003].value * 1e-9)
    assert np.all(np.diff(ids) == 1) and np.all(np.diff(times) > 0)
    last = ca_read(pv("image1:ArrayData"))
    np.testing.assert_array_equal(
        pixels, np.asarray(last.data).astype(np.int16).view(np.uint16).reshape(48, 64)
    )
    ca_write(pv("TIFF1:EnableCallbacks"), 0)
