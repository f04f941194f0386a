"""areaDetector HDF5 files: frames of ``/entry/data/data`` and their per-frame NDAttributes.

``AreaDetectorHDF5Handler`` serves the ``AD_HDF5`` family of resource specs (point ``i`` is frames
``[i*fpp, (i+1)*fpp)``); ``HDF5DatasetHandler`` serves ophyd-async stream resources (rows
``[start, stop)`` of a named dataset). Both read a file while its writer holds it (SWMR when the
writer enabled it, else reopening), and say "not yet" while the file or the rows are missing.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import numpy as np

from atomscale_bluesky.callback.handlers.errors import ExternalDataError, ExternalNotReady

__all__ = ["EPICS_EPOCH_OFFSET", "AreaDetectorHDF5Handler", "HDF5DatasetHandler", "HDF5File"]

EPICS_EPOCH_OFFSET = 631152000.0  # seconds from 1970-01-01 to the EPICS epoch 1990-01-01
DEFAULT_DATASET = "/entry/data/data"
_ATTRS = "/entry/instrument/NDAttributes/"
_TS_SEC = _ATTRS + "NDArrayEpicsTSSec"
_TS_NSEC = _ATTRS + "NDArrayEpicsTSnSec"
_TIMESTAMP = _ATTRS + "NDArrayTimeStamp"  # float seconds since the EPICS epoch
_UNIQUE_ID = _ATTRS + "NDArrayUniqueId"


class HDF5File:
    """One HDF5 file read while it may still be written: rows on demand, reopened when short."""

    def __init__(self, path: str | Path, dataset: str = DEFAULT_DATASET) -> None:
        self.path = Path(path)
        self.dataset = dataset
        self._handle: Any = None
        self._columns: dict[str, Any] = {}  # dataset name -> h5py dataset (None: absent)

    def rows(self, start: int, stop: int) -> np.ndarray:
        """Rows ``[start, stop)`` of the dataset; ExternalNotReady while the file holds fewer."""
        data = self._dataset(stop)
        frames = np.asarray(data[start:stop])
        if self._attributes_behind(stop):
            self.close()  # the next read reopens the file and sees the rows written since
            raise ExternalNotReady(f"{self.path}: NDAttributes hold fewer than {stop} frames")
        return frames

    def times(self, start: int, stop: int) -> list[float] | None:
        """Per-frame hardware times (POSIX seconds): EPICS timestamps, else NDArrayTimeStamp."""
        sec, nsec = self._column(_TS_SEC, stop), self._column(_TS_NSEC, stop)
        if sec is not None and nsec is not None:
            seconds = np.asarray(sec[start:stop], dtype=float).reshape(-1)
            nanos = np.asarray(nsec[start:stop], dtype=float).reshape(-1)
            if np.any(seconds > 0):  # an IOC without EPICS times writes zeros
                return (seconds + EPICS_EPOCH_OFFSET + nanos * 1e-9).tolist()  # type: ignore[no-any-return]
        stamps = self._column(_TIMESTAMP, stop)
        if stamps is not None:
            values = np.asarray(stamps[start:stop], dtype=float).reshape(-1)
            if np.any(values > 0):
                return (values + EPICS_EPOCH_OFFSET).tolist()  # type: ignore[no-any-return]
        return None

    def unique_ids(self, start: int, stop: int) -> list[int] | None:
        ids = self._column(_UNIQUE_ID, stop)
        if ids is None:
            return None
        return [int(v) for v in np.asarray(ids[start:stop]).reshape(-1)]

    def close(self) -> None:
        handle, self._handle = self._handle, None
        self._columns.clear()
        if handle is not None:
            with contextlib.suppress(Exception):  # closing is best effort
                handle.close()

    def _attributes_behind(self, stop: int) -> bool:
        """True when per-frame NDAttributes exist but lag the frames (written, not yet seen)."""
        for name in (_TS_SEC, _TS_NSEC, _UNIQUE_ID):
            if (
                self._handle is not None
                and name in self._handle
                and self._column(name, stop) is None
            ):
                return True
        return False

    def _column(self, name: str, stop: int) -> Any:
        """The open file's dataset ``name`` if it holds ``stop`` rows (refreshed only when it
        seems short: a SWMR reader sees new rows after a refresh), else None."""
        if self._handle is None:
            return None
        if name not in self._columns:
            self._columns[name] = self._handle.get(name)
        data = self._columns[name]
        if data is None or not data.shape:
            return None
        if data.shape[0] < stop:
            with contextlib.suppress(Exception):  # only SWMR-opened datasets refresh
                data.refresh()
        return data if data.shape[0] >= stop else None

    def _dataset(self, stop: int) -> Any:
        """The dataset holding at least ``stop`` rows, reopening the file once if it holds fewer."""
        have = 0
        for attempt in range(2):
            self._open()
            data = self._column(self.dataset, stop)
            if data is not None:
                return data
            found = self._columns.get(self.dataset)
            have = int(found.shape[0]) if found is not None and found.shape else 0
            if attempt == 0:
                self.close()  # a non-SWMR reader sees new rows only after reopening
        self.close()
        raise ExternalNotReady(f"{self.path}:{self.dataset} holds {have} frames, need {stop}")

    def _open(self) -> Any:
        import h5py

        if self._handle is not None:
            return self._handle
        if not self.path.exists():
            raise ExternalNotReady(f"file {self.path} does not exist (yet)", missing=True)
        errors = []
        for swmr in (True, False):
            try:
                self._handle = h5py.File(self.path, "r", swmr=swmr, locking=False)
                return self._handle
            except OSError as exc:  # held by its writer, or its header not flushed yet
                errors.append(str(exc))
        if _foreign(self.path):
            raise ExternalDataError(f"{self.path} is not a readable HDF5 file: {errors[-1]}")
        raise ExternalNotReady(f"{self.path} cannot be opened yet: {errors[-1]}")


_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_SIGNATURE_OFFSETS = (0, 512, 1024, 2048)


def _foreign(path: Path) -> bool:
    """True when the file holds bytes but no HDF5 signature where HDF5 puts it: some other
    file, not one whose writer has not flushed its header yet (zeros, or nothing)."""
    try:
        with open(path, "rb") as f:
            head = f.read(_SIGNATURE_OFFSETS[-1] + len(_SIGNATURE))
    except OSError:
        return False
    if len(head) < len(_SIGNATURE) or not head[: len(_SIGNATURE)].strip(b"\x00"):
        return False
    return not any(head[at : at + len(_SIGNATURE)] == _SIGNATURE for at in _SIGNATURE_OFFSETS)


class AreaDetectorHDF5Handler:
    """``AD_HDF5`` (and ``AD_HDF5_SWMR``, ``AD_HDF5_SWMR_STREAM``, ``AD_HDF5_SINGLE``)."""

    specs = {"AD_HDF5", "AD_HDF5_SWMR", "AD_HDF5_SWMR_STREAM", "AD_HDF5_SINGLE"}

    def __init__(
        self, filename: str, frame_per_point: int = 1, dataset: str = DEFAULT_DATASET, **_: Any
    ) -> None:
        self.file = HDF5File(filename, dataset)
        self.frame_per_point = max(1, int(frame_per_point or 1))

    def _span(self, point_number: int) -> tuple[int, int]:
        start = int(point_number) * self.frame_per_point
        return start, start + self.frame_per_point

    def __call__(self, point_number: int = 0, **_: Any) -> np.ndarray:
        return self.file.rows(*self._span(point_number))

    def frame_times(self, point_number: int = 0, **_: Any) -> list[float] | None:
        """Each frame's hardware time, when the file's NDAttributes hold it."""
        return self.file.times(*self._span(point_number))

    def frame_ids(self, point_number: int = 0, **_: Any) -> list[int] | None:
        return self.file.unique_ids(*self._span(point_number))

    def close(self) -> None:
        self.file.close()


class HDF5DatasetHandler:
    """An ophyd-async HDF5 stream resource: rows ``[start, stop)`` of ``parameters["dataset"]``."""

    def __init__(self, filename: str, dataset: str = DEFAULT_DATASET, **_: Any) -> None:
        self.file = HDF5File(filename, dataset)

    def __call__(self, start: int, stop: int) -> np.ndarray:
        return self.file.rows(start, stop)

    def frame_times(self, start: int, stop: int) -> list[float] | None:
        return self.file.times(start, stop)

    def frame_ids(self, start: int, stop: int) -> list[int] | None:
        return self.file.unique_ids(start, stop)

    def close(self) -> None:
        self.file.close()
