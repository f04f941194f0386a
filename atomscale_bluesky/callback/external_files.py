"""Read externally stored frames with h5py, on the callback's worker thread (never the RunEngine's).

Two document families point at HDF5 files:

* areaDetector's HDF5 plugin (ophyd v1): ``resource`` with spec ``AD_HDF5``/``AD_HDF5_SWMR`` and
  ``resource_kwargs["frame_per_point"]``; each ``datum`` has ``datum_kwargs["point_number"]`` and the
  event carries the datum id. Point ``i`` is frames ``[i*fpp, (i+1)*fpp)`` of ``/entry/data/data``.
* ophyd-async: ``stream_resource`` (``mimetype "application/x-hdf5"``, ``uri``, ``parameters.dataset``)
  and ``stream_datum`` with ``indices {start, stop}`` of that dataset.

A file that is still being written may not be readable yet; ``ExternalNotReady`` says "try again
later", ``ExternalDataError`` says "this data is lost" (missing resource, unreadable file).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import numpy as np

__all__ = [
    "AD_HDF5_SPECS",
    "ExternalDataError",
    "ExternalFrames",
    "ExternalNotReady",
    "ExternalStore",
]

AD_HDF5_SPECS = ("AD_HDF5", "AD_HDF5_SWMR", "AD_HDF5_SWMR_STREAM", "AD_HDF5_SINGLE")
DEFAULT_DATASET = "/entry/data/data"
HDF5_MIMETYPES = ("application/x-hdf5", "application/x-hdf5-swmr")
EPICS_EPOCH_OFFSET = 631152000.0  # seconds from 1970-01-01 to the EPICS epoch 1990-01-01
_TS_SEC = "/entry/instrument/NDAttributes/NDArrayEpicsTSSec"
_TS_NSEC = "/entry/instrument/NDAttributes/NDArrayEpicsTSnSec"
_UNIQUE_ID = "/entry/instrument/NDAttributes/NDArrayUniqueId"


class ExternalDataError(Exception):
    """The external data cannot be read and never will be (missing document, bad file)."""


class ExternalNotReady(ExternalDataError):
    """The file or the frames are not there yet (still being written): retry later."""


@dataclass
class ExternalFrames:
    """Frames read from a file, with per-frame hardware times and camera ids when the file has them."""

    frames: np.ndarray
    timestamps: list[float] | None = None
    unique_ids: list[int] | None = None


@dataclass(frozen=True)
class _Resource:
    path: Path
    dataset: str
    frame_per_point: int


def resource_path(doc: Mapping[str, Any]) -> Path:
    """Absolute file path of a v1 resource document (root + resource_path)."""
    root = doc.get("root") or ""
    rel = doc.get("resource_path") or ""
    return Path(os.path.join(root, rel)) if root else Path(rel)


def uri_path(uri: str) -> Path:
    """File path of a ``file://host/path`` URI (ophyd-async stream resources)."""
    parsed = urlparse(uri)
    if parsed.scheme not in ("", "file"):
        raise ExternalDataError(f"unsupported URI scheme {parsed.scheme!r} in {uri!r}")
    return Path(unquote(parsed.path))


class ExternalStore:
    """Keeps a run's resource/datum/stream_resource documents and reads the frames they point at."""

    def __init__(self) -> None:
        self._resources: dict[str, _Resource] = {}
        self._bad_resources: dict[str, str] = {}
        self._datums: dict[str, tuple[str, int]] = {}  # datum_id -> (resource uid, point number)
        self._stream_resources: dict[str, _Resource] = {}
        self._stream_keys: dict[str, str] = {}  # stream resource uid -> data key
        self._files: dict[Path, Any] = {}

    # -- documents -------------------------------------------------------------------------
    def add_resource(self, doc: Mapping[str, Any]) -> None:
        spec = str(doc.get("spec", ""))
        if spec not in AD_HDF5_SPECS:
            self._bad_resources[doc["uid"]] = f"unsupported resource spec {spec!r}"
            return
        kwargs = doc.get("resource_kwargs") or {}
        fpp = int(kwargs.get("frame_per_point", 1) or 1)
        dataset = str(kwargs.get("dataset", DEFAULT_DATASET))
        self._resources[doc["uid"]] = _Resource(resource_path(doc), dataset, max(1, fpp))

    def add_datum(self, doc: Mapping[str, Any]) -> None:
        kwargs = doc.get("datum_kwargs") or {}
        point = kwargs.get("point_number", kwargs.get("frame", 0))
        self._datums[doc["datum_id"]] = (doc["resource"], int(point or 0))

    def add_stream_resource(self, doc: Mapping[str, Any]) -> None:
        mimetype = str(doc.get("mimetype", ""))
        if mimetype not in HDF5_MIMETYPES:
            self._bad_resources[doc["uid"]] = f"unsupported stream resource mimetype {mimetype!r}"
            return
        self._stream_keys[doc["uid"]] = str(doc.get("data_key", ""))
        params = doc.get("parameters") or {}
        dataset = str(params.get("dataset", DEFAULT_DATASET))
        self._stream_resources[doc["uid"]] = _Resource(uri_path(str(doc["uri"])), dataset, 1)

    def stream_key(self, stream_resource_uid: str) -> str | None:
        """The data key a stream resource holds frames for."""
        return self._stream_keys.get(stream_resource_uid)

    # -- reads -----------------------------------------------------------------------------
    def read_datum(self, datum_id: str) -> ExternalFrames:
        """Frames of one v1 datum (frame_per_point of them)."""
        if datum_id not in self._datums:
            raise ExternalDataError(f"datum {datum_id!r} was never announced by a datum document")
        resource_uid, point = self._datums[datum_id]
        resource = self._resource(self._resources, resource_uid)
        start = point * resource.frame_per_point
        return self._read(resource, start, start + resource.frame_per_point)

    def read_stream_datum(self, doc: Mapping[str, Any], per_index: int = 1) -> ExternalFrames:
        """Frames of a stream datum: its indices count events, each ``per_index`` dataset rows
        (ophyd-async's collections per event)."""
        resource = self._resource(self._stream_resources, doc["stream_resource"])
        indices = doc.get("indices") or {}
        per = max(1, per_index)
        return self._read(resource, int(indices["start"]) * per, int(indices["stop"]) * per)

    def close(self) -> None:
        for handle in self._files.values():
            with contextlib.suppress(Exception):  # closing is best effort
                handle.close()
        self._files.clear()

    def _resource(self, table: Mapping[str, _Resource], uid: str) -> _Resource:
        if uid in self._bad_resources:
            raise ExternalDataError(self._bad_resources[uid])
        if uid not in table:
            raise ExternalDataError(f"resource {uid!r} was never announced by a resource document")
        return table[uid]

    def _read(self, resource: _Resource, start: int, stop: int) -> ExternalFrames:
        handle = self._open(resource.path)
        try:
            dataset = handle[resource.dataset]
        except KeyError as exc:
            self._forget(resource.path)
            raise ExternalNotReady(f"{resource.path}: no dataset {resource.dataset!r} yet") from exc
        _refresh(dataset)
        if dataset.shape[0] < stop:
            self._forget(resource.path)
            raise ExternalNotReady(
                f"{resource.path}:{resource.dataset} holds {dataset.shape[0]} frames, need {stop}"
            )
        frames = np.asarray(dataset[start:stop])
        if _attributes_behind(handle, stop):
            self._forget(resource.path)
            raise ExternalNotReady(f"{resource.path}: NDAttributes hold fewer than {stop} frames")
        return ExternalFrames(
            frames=frames,
            timestamps=_epics_times(handle, start, stop),
            unique_ids=_unique_ids(handle, start, stop),
        )

    def _open(self, path: Path) -> Any:
        import h5py

        handle = self._files.get(path)
        if handle is not None:
            return handle
        if not path.exists():
            raise ExternalNotReady(f"file {path} does not exist (yet)")
        try:
            handle = h5py.File(path, "r", swmr=True, locking=False)
        except OSError:
            try:
                handle = h5py.File(path, "r", locking=False)
            except OSError as exc:
                message = str(exc)
                if "signature" in message or "truncated" in message or "not an HDF5" in message:
                    raise ExternalDataError(
                        f"{path} is not a readable HDF5 file: {message}"
                    ) from exc
                raise ExternalNotReady(f"{path} cannot be opened yet: {message}") from exc
        self._files[path] = handle
        return handle

    def _forget(self, path: Path) -> None:
        """Close a handle so the next read reopens the file and sees what was written since."""
        handle = self._files.pop(path, None)
        if handle is not None:
            with contextlib.suppress(Exception):
                handle.close()


def _refresh(dataset: Any) -> None:
    with contextlib.suppress(Exception):  # only SWMR-opened datasets refresh
        dataset.refresh()


def _attributes_behind(handle: Any, stop: int) -> bool:
    """True when the per-frame NDAttributes exist but lag the frames (written, not yet seen)."""
    for name in (_TS_SEC, _TS_NSEC, _UNIQUE_ID):
        if name in handle:
            _refresh(handle[name])
            if handle[name].shape[0] < stop:
                return True
    return False


def _epics_times(handle: Any, start: int, stop: int) -> list[float] | None:
    """Per-frame EPICS timestamps areaDetector stores as NDAttributes, as Unix seconds."""
    if _TS_SEC not in handle or _TS_NSEC not in handle:
        return None
    sec = handle[_TS_SEC]
    nsec = handle[_TS_NSEC]
    if sec.shape[0] < stop or nsec.shape[0] < stop:
        return None
    seconds = np.asarray(sec[start:stop], dtype=float).reshape(-1)
    nanos = np.asarray(nsec[start:stop], dtype=float).reshape(-1)
    return [float(s + EPICS_EPOCH_OFFSET + n * 1e-9) for s, n in zip(seconds, nanos, strict=False)]


def _unique_ids(handle: Any, start: int, stop: int) -> list[int] | None:
    if _UNIQUE_ID not in handle or handle[_UNIQUE_ID].shape[0] < stop:
        return None
    return [int(v) for v in np.asarray(handle[_UNIQUE_ID][start:stop]).reshape(-1)]
