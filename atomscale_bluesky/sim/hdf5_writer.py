"""An HDF5 file in areaDetector's NDFileHDF5 layout, written frame by frame with h5py.

``/entry/data/data`` holds the frames (N x H x W); ``/entry/instrument/NDAttributes`` holds one
value per frame: ``NDArrayUniqueId``, ``NDArrayTimeStamp`` (seconds since the EPICS epoch) and
``NDArrayEpicsTSSec``/``NDArrayEpicsTSnSec`` (the frame's EPICS timestamp). Each frame is flushed
as it is appended (with SWMR when asked), so readers see the file grow. Only the plugin's writer
thread calls these methods.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

EPICS_EPOCH_OFFSET = 631152000  # seconds from 1970-01-01 to the EPICS epoch 1990-01-01
DATA_PATH = "/entry/data/data"
ATTRIBUTES_PATH = "/entry/instrument/NDAttributes"
_ATTRIBUTES = (
    ("NDArrayUniqueId", "<i4"),
    ("NDArrayTimeStamp", "<f8"),
    ("NDArrayEpicsTSSec", "<u4"),
    ("NDArrayEpicsTSnSec", "<u4"),
)


def epics_stamp(t: float) -> tuple[int, int]:
    """(seconds past the EPICS epoch, nanoseconds) of a UNIX time."""
    seconds = int(t)
    nanos = int(round((t - seconds) * 1e9))
    if nanos >= 1_000_000_000:
        seconds, nanos = seconds + 1, nanos - 1_000_000_000
    return seconds - EPICS_EPOCH_OFFSET, nanos


class Hdf5FrameFile:
    """One open areaDetector-layout HDF5 file, growing by one frame per :meth:`append`."""

    def __init__(self, path: Path, frame_shape: tuple[int, int], dtype: Any, swmr: bool) -> None:
        import h5py

        self.path = path
        self.frames = 0
        self._file = h5py.File(path, "w", libver="latest" if swmr else "earliest")
        height, width = frame_shape
        entry = self._file.create_group("entry")
        entry.attrs["NX_class"] = "NXentry"
        data = entry.create_group("data")
        data.attrs["NX_class"] = "NXdata"
        self._data = data.create_dataset(
            "data",
            shape=(0, height, width),
            maxshape=(None, height, width),
            chunks=(1, height, width),
            dtype=np.dtype(dtype),
        )
        attributes = entry.create_group("instrument").create_group("NDAttributes")
        self._attributes = {
            name: attributes.create_dataset(name, shape=(0,), maxshape=(None,), dtype=kind)
            for name, kind in _ATTRIBUTES
        }
        if swmr:
            self._file.swmr_mode = True
        self._file.flush()

    def append(self, pixels: np.ndarray, unique_id: int, t: float) -> int:
        """Write one frame and its attributes, flush, and return the frame count."""
        n = self.frames
        self._data.resize(n + 1, axis=0)
        self._data[n] = pixels
        seconds, nanos = epics_stamp(t)
        values = {
            "NDArrayUniqueId": unique_id,
            "NDArrayTimeStamp": t - EPICS_EPOCH_OFFSET,
            "NDArrayEpicsTSSec": seconds,
            "NDArrayEpicsTSnSec": nanos,
        }
        for name, dataset in self._attributes.items():
            dataset.resize(n + 1, axis=0)
            dataset[n] = values[name]
        self._file.flush()
        self.frames = n + 1
        return self.frames

    def close(self) -> None:
        self._file.close()
