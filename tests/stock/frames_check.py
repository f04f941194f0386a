"""Compare what the local server stored with the frames (and times) an HDF5 file holds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import numpy as np

from atomscale_bluesky.frames import to_uint8

EPICS_EPOCH_OFFSET = 631152000.0


def file_frames(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(frames, unix times, unique ids) of an areaDetector HDF5 file."""
    with h5py.File(path, "r", swmr=True, locking=False) as f:
        frames = f["/entry/data/data"][()]
        attrs = f["/entry/instrument/NDAttributes"]
        seconds = attrs["NDArrayEpicsTSSec"][()].astype(np.float64)
        nanos = attrs["NDArrayEpicsTSnSec"][()].astype(np.float64)
        ids = attrs["NDArrayUniqueId"][()]
    return frames, seconds + EPICS_EPOCH_OFFSET + nanos * 1e-9, ids


def assert_stored_equals_file(server: Any, data_id: str, path: Path, bit_depth: int) -> int:
    """The stored frames are the file's frames (as uint8) and chunks start at the file's times."""
    frames, times, ids = file_frames(path)
    stored = server.reader.frames(data_id)
    assert len(stored) == len(frames), (len(stored), len(frames))
    np.testing.assert_array_equal(stored, to_uint8(frames, bit_depth=bit_depth))
    assert np.all(np.diff(ids) == 1)  # every frame the IOC produced while capturing
    offset = 0
    for chunk in server.reader.chunk_times(data_id):
        assert chunk["start_unix_ms_utc"] == int(round(times[offset] * 1000))
        offset += chunk["n_frames"]
    assert offset == len(frames)
    return len(stored)
