"""Ophyd signals that write each triggered frame to files laid out as areaDetector's file plugins
write them (HDF5 with NDAttributes, one TIFF per frame) and announce them with resource/datum
documents as ophyd's FileStore plugins do, the resource root being the IOC host's directory."""

from __future__ import annotations

import itertools
import time
from collections import deque
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from ophyd import Signal
from ophyd.status import StatusBase

from atomscale_bluesky.callback.handlers import EPICS_EPOCH_OFFSET

T0 = 1_700_000_000.0
_ATTRS = "/entry/instrument/NDAttributes/"


class FileCamera(Signal):
    """A camera whose frames go to files; ``lag`` frames are written only after later triggers
    (the file is behind its datums, as a plugin's queue is), ``write=False`` never writes."""

    def __init__(
        self,
        *args: Any,
        write_dir: Path,
        ioc_root: str | None = None,
        layout: str = "AD_HDF5",
        spec: str | None = None,
        shape: tuple[int, int] = (24, 32),
        fps: float = 10.0,
        times: str | None = "epics",  # "epics", "timestamp" (NDArrayTimeStamp only) or None
        lag: int = 0,
        write: bool = True,
        stamp_events: bool = True,  # False: readings carry the host's time, not the frame's
        closed_until_unstage: bool = False,  # HDF5 without SWMR: unreadable until closed
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, value="", **kwargs)
        self.write_dir, self.ioc_root = Path(write_dir), ioc_root or str(write_dir)
        self.layout, self.spec = layout, spec or layout
        self.shape, self.fps, self.times, self.lag, self.write = shape, fps, times, lag, write
        self.stamp_events = stamp_events
        self.closed_until_unstage = closed_until_unstage
        self.produced: list[tuple[float, np.ndarray]] = []
        self._docs: deque[tuple[str, dict[str, Any]]] = deque()
        self._pending: list[int] = []
        self._file: h5py.File | None = None
        self._uid = ""
        self._count = itertools.count()
        self._runs = itertools.count()
        self._written = 0

    def frame(self, n: int) -> np.ndarray:
        return np.random.default_rng(500 + n).integers(1, 256, self.shape, dtype=np.uint8)

    # -- staging ------------------------------------------------------------------------------
    def stage(self) -> list[Any]:
        import uuid

        self._uid = str(uuid.uuid4())
        self._count = itertools.count()
        self._written = 0
        self.produced.clear()
        sub = f"run{next(self._runs)}"
        (self.write_dir / sub).mkdir(parents=True, exist_ok=True)
        if self.layout == "AD_HDF5":
            rel = f"{sub}/img_000.h5"
            kwargs: dict[str, Any] = {"frame_per_point": 1}
            if self.write and self.closed_until_unstage:
                (self.write_dir / rel).write_bytes(b"\x00" * 4096)  # created, header not flushed
            elif self.write:
                self._open_hdf5(self.write_dir / rel)
        else:
            rel = f"{sub}/"
            kwargs = {"template": "%s%s_%6.6d.tiff", "filename": "img", "frame_per_point": 1}
        self._docs.append(
            (
                "resource",
                {
                    "uid": self._uid,
                    "spec": self.spec,
                    "root": self.ioc_root,
                    "resource_path": rel,
                    "resource_kwargs": kwargs,
                    "path_semantics": "posix",
                },
            )
        )
        self._rel = rel
        return [self]

    def unstage(self) -> list[Any]:
        if self.write and self.closed_until_unstage:
            self._open_hdf5(self.write_dir / self._rel)
            self.closed_until_unstage = False
        self._flush(len(self.produced))
        if self._file is not None:
            self._file.close()
            self._file = None
        return [self]

    def _open_hdf5(self, path: Path) -> None:
        f = h5py.File(path, "w", libver="latest")
        h, w = self.shape
        f.create_dataset(
            "/entry/data/data", (0, h, w), np.uint8, maxshape=(None, h, w), chunks=(1, h, w)
        )
        if self.times == "epics":
            f.create_dataset(_ATTRS + "NDArrayEpicsTSSec", (0,), np.int64, maxshape=(None,))
            f.create_dataset(_ATTRS + "NDArrayEpicsTSnSec", (0,), np.int64, maxshape=(None,))
        if self.times is not None:
            f.create_dataset(_ATTRS + "NDArrayTimeStamp", (0,), np.float64, maxshape=(None,))
        f.create_dataset(_ATTRS + "NDArrayUniqueId", (0,), np.int64, maxshape=(None,))
        f.swmr_mode = True  # readers may open it while it is written
        self._file = f

    # -- acquisition --------------------------------------------------------------------------
    def trigger(self) -> StatusBase:
        n = next(self._count)
        ts = T0 + n / self.fps
        self.produced.append((ts, self.frame(n)))
        datum_id = f"{self._uid}/{n}"
        self._docs.append(
            (
                "datum",
                {"datum_id": datum_id, "resource": self._uid, "datum_kwargs": {"point_number": n}},
            )
        )
        self._readback = datum_id
        self._metadata["timestamp"] = ts if self.stamp_events else time.time()
        self._flush(n + 1 - self.lag)
        status = StatusBase()
        status.set_finished()
        return status

    def _flush(self, upto: int) -> None:
        """Write the frames before ``upto`` that are not written yet."""
        if not self.write or self.closed_until_unstage:
            return
        written = self._written
        for n in range(written, max(written, upto)):
            ts, frame = self.produced[n]
            if self.layout == "AD_HDF5":
                self._append_hdf5(n, ts, frame)
            else:
                import tifffile

                path = self.write_dir / self._rel / f"img_{n:06d}.tiff"
                tifffile.imwrite(path, frame)
        self._written = max(written, upto)

    def _append_hdf5(self, n: int, ts: float, frame: np.ndarray) -> None:
        f = self._file
        assert f is not None
        rel = ts - EPICS_EPOCH_OFFSET
        values: dict[str, Any] = {"/entry/data/data": frame, _ATTRS + "NDArrayUniqueId": n + 1}
        if self.times == "epics":
            values[_ATTRS + "NDArrayEpicsTSSec"] = int(np.floor(rel))
            values[_ATTRS + "NDArrayEpicsTSnSec"] = int(round((rel - np.floor(rel)) * 1e9))
        if self.times == "epics":  # the driver's own clock, off the EPICS time: not preferred
            values[_ATTRS + "NDArrayTimeStamp"] = rel + 0.25
        elif self.times is not None:
            values[_ATTRS + "NDArrayTimeStamp"] = rel
        for name, value in values.items():
            data = f[name]
            data.resize(n + 1, axis=0)
            data[n] = value
            data.flush()

    def describe(self) -> dict[str, Any]:
        h, w = self.shape
        return {
            self.name: {
                "source": "PV:FCAM:HDF1:FullFileName_RBV",
                "dtype": "array",
                "shape": [h, w],
                "dtype_numpy": "|u1",
                "external": "FILESTORE:",
            }
        }

    def collect_asset_docs(self) -> Any:
        while self._docs:
            yield self._docs.popleft()
