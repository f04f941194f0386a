"""Compose real Bluesky documents (event_model) for callback tests: cameras, sensors, storage forms.

A ``CameraSpec`` says what a camera produced (frames, hardware times, counters); ``camera_run``
turns it into the documents a RunEngine would emit for one stream: inline arrays, areaDetector
HDF5 resource/datum (files written here), or ophyd-async stream_resource/stream_datum, as single
events or event pages.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import event_model
import h5py
import numpy as np

T0 = 1_700_000_000.0
Doc = tuple[str, dict[str, Any]]


@dataclass
class CameraSpec:
    key: str
    frames: np.ndarray  # (N, H, W)
    times: np.ndarray  # hardware timestamps, one per frame
    counters: np.ndarray | None = None
    dtype_numpy: str = "|u1"
    flat: bool = False  # describe and deliver as a flat 1-D waveform (sizes in configuration)
    fps_config: float | None = None  # AcquirePeriod in the configuration
    object_name: str = ""

    def __post_init__(self) -> None:
        self.object_name = self.object_name or self.key.split("_")[0]


def make_camera(
    key: str,
    n: int,
    *,
    h: int = 24,
    w: int = 32,
    fps: float = 20.0,
    t0: float = T0,
    seed: int = 0,
    dtype: Any = np.uint8,
    **kwargs: Any,
) -> CameraSpec:
    rng = np.random.default_rng(seed)
    top = 256 if np.dtype(dtype) == np.uint8 else 4096
    frames = rng.integers(1, top, size=(n, h, w)).astype(dtype)
    times = t0 + np.arange(n) / fps
    return CameraSpec(key, frames, times, counters=np.arange(1, n + 1), **kwargs)


@dataclass
class SensorSpec:
    key: str
    values: np.ndarray
    times: np.ndarray
    units: str = ""
    dtype: str = "number"
    object_name: str = ""  # the device it belongs to (its own key when empty)


@dataclass
class RunDocs:
    """Documents of one run plus what the callback should store."""

    run: Any
    docs: list[Doc] = field(default_factory=list)

    @classmethod
    def start(cls, **md: Any) -> RunDocs:
        metadata = {"plan_name": "count", "scan_id": 7, **md}
        bundle = event_model.compose_run(metadata=metadata)
        return cls(bundle, [("start", bundle.start_doc)])

    def stop(self, exit_status: str = "success") -> None:
        self.docs.append(("stop", self.run.compose_stop(exit_status=exit_status)))

    def feed(self, callback: Any) -> None:
        for name, doc in self.docs:
            callback(name, doc)


def _camera_data_key(cam: CameraSpec, storage: str) -> dict[str, Any]:
    n, h, w = cam.frames.shape
    shape = [h * w] if cam.flat else [h, w]
    key: dict[str, Any] = {
        "source": f"PV:{cam.key}:image1:ArrayData",
        "dtype": "array",
        "shape": shape,
        "dtype_numpy": cam.dtype_numpy,
        "object_name": cam.object_name,
    }
    if storage == "ad_hdf5":
        key["external"] = "FILESTORE:"
    elif storage == "stream":
        key.update(external="STREAM:", shape=[1, h, w])
    return key


def _configuration(cam: CameraSpec) -> dict[str, Any]:
    _, h, w = cam.frames.shape
    data: dict[str, Any] = {}
    keys: dict[str, Any] = {}
    if cam.flat:
        data.update({f"{cam.object_name}_width": w, f"{cam.object_name}_height": h})
        keys[f"{cam.object_name}_width"] = {
            "source": "PV:X:image1:ArraySize0_RBV",
            "dtype": "integer",
            "shape": [],
        }
        keys[f"{cam.object_name}_height"] = {
            "source": "PV:X:image1:ArraySize1_RBV",
            "dtype": "integer",
            "shape": [],
        }
    if cam.fps_config:
        data[f"{cam.object_name}_acquire_period"] = 1.0 / cam.fps_config
        keys[f"{cam.object_name}_acquire_period"] = {
            "source": "PV:X:cam1:AcquirePeriod_RBV",
            "dtype": "number",
            "shape": [],
        }
    return {"data": data, "timestamps": {k: T0 for k in data}, "data_keys": keys}


def camera_stream(
    rd: RunDocs,
    cameras: list[CameraSpec],
    *,
    tmp_path: Path | None = None,
    storage: str = "inline",
    form: str = "event",
    name: str = "primary",
    sensors: list[SensorSpec] | None = None,
    page_size: int = 7,
    epics_times_in_file: bool = True,
) -> None:
    """Append a descriptor and all events (and asset documents) of one stream to ``rd``."""
    sensors = sensors or []
    n = len(cameras[0].frames) if cameras else len(sensors[0].values)
    data_keys: dict[str, Any] = {}
    configuration: dict[str, Any] = {}
    for cam in cameras:
        data_keys[cam.key] = _camera_data_key(cam, storage)
        if cam.counters is not None and storage != "stream":
            data_keys[f"{cam.object_name}_array_counter"] = {
                "source": f"PV:{cam.key}:cam1:ArrayCounter_RBV",
                "dtype": "integer",
                "shape": [],
                "object_name": cam.object_name,
            }
        configuration[cam.object_name] = _configuration(cam)
    for s in sensors:
        data_keys[s.key] = {
            "source": f"PV:{s.key}",
            "dtype": s.dtype,
            "shape": [],
            "units": s.units,
            "object_name": s.object_name or s.key,
        }
    desc = rd.run.compose_descriptor(
        name=name,
        data_keys=data_keys,
        configuration=configuration,
        object_keys={c.object_name: [c.key] for c in cameras},
    )
    rd.docs.append(("descriptor", desc.descriptor_doc))
    datum_ids: dict[str, list[str]] = {}
    stream_datums: dict[str, list[dict[str, Any]]] = {}
    for cam in cameras:
        if storage == "ad_hdf5":
            assert tmp_path is not None
            path = tmp_path / f"{cam.key}_{name}.h5"
            with h5py.File(path, "w") as f:
                f.create_dataset("/entry/data/data", data=cam.frames)
            res = rd.run.compose_resource(
                spec="AD_HDF5",
                root=str(tmp_path),
                resource_path=path.name,
                resource_kwargs={"frame_per_point": 1},
            )
            rd.docs.append(("resource", res.resource_doc))
            datums = [res.compose_datum(datum_kwargs={"point_number": i}) for i in range(n)]
            rd.docs.extend(("datum", d) for d in datums)
            datum_ids[cam.key] = [d["datum_id"] for d in datums]
        elif storage == "stream":
            assert tmp_path is not None
            path = tmp_path / f"{cam.key}_{name}.h5"
            _write_stream_file(path, cam, epics_times_in_file)
            sres = rd.run.compose_stream_resource(
                mimetype="application/x-hdf5",
                uri=f"file://localhost{path}",
                data_key=cam.key,
                parameters={
                    "dataset": "/entry/data/data",
                    "chunk_shape": [1, *cam.frames.shape[1:]],
                },
            )
            rd.docs.append(("stream_resource", sres.stream_resource_doc))
            stream_datums[cam.key] = [
                sres.compose_stream_datum(
                    indices={"start": i, "stop": i + 1},
                    seq_nums={"start": i + 1, "stop": i + 2},
                    descriptor=desc.descriptor_doc,
                )
                for i in range(n)
            ]
    events = []
    for i in range(n):
        data: dict[str, Any] = {}
        stamps: dict[str, Any] = {}
        filled: dict[str, bool] = {}
        for cam in cameras:
            if storage == "inline":
                frame = cam.frames[i]
                data[cam.key] = frame.reshape(-1) if cam.flat else frame
                stamps[cam.key] = float(cam.times[i])
            elif storage == "ad_hdf5":
                data[cam.key] = datum_ids[cam.key][i]
                stamps[cam.key] = float(cam.times[i])
                filled[cam.key] = False
            if cam.counters is not None and storage != "stream":
                data[f"{cam.object_name}_array_counter"] = int(cam.counters[i])
                stamps[f"{cam.object_name}_array_counter"] = float(cam.times[i])
        for s in sensors:
            data[s.key] = s.values[i]
            stamps[s.key] = float(s.times[i])
        if storage == "stream":
            for cam in cameras:
                rd.docs.append(("stream_datum", stream_datums[cam.key][i]))
        event = desc.compose_event(data=data, timestamps=stamps, filled=filled, seq_num=i + 1)
        if form == "event":
            rd.docs.append(("event", event))
        else:
            events.append(event)
            if len(events) == page_size:
                rd.docs.append(("event_page", event_model.pack_event_page(*events)))
                events = []
    if events:
        rd.docs.append(("event_page", event_model.pack_event_page(*events)))


def _write_stream_file(path: Path, cam: CameraSpec, epics_times: bool) -> None:
    from atomscale_bluesky.callback.external_files import EPICS_EPOCH_OFFSET

    with h5py.File(path, "w") as f:
        f.create_dataset("/entry/data/data", data=cam.frames)
        if epics_times:
            rel = cam.times - EPICS_EPOCH_OFFSET
            sec = np.floor(rel).astype(np.int64)
            nsec = np.round((rel - sec) * 1e9).astype(np.int64)
            f.create_dataset("/entry/instrument/NDAttributes/NDArrayEpicsTSSec", data=sec)
            f.create_dataset("/entry/instrument/NDAttributes/NDArrayEpicsTSnSec", data=nsec)
            if cam.counters is not None:
                f.create_dataset(
                    "/entry/instrument/NDAttributes/NDArrayUniqueId", data=cam.counters
                )


def chunk_starts_ms(times: np.ndarray, chunk_size: int) -> list[int]:
    """The capture start of each chunk: its first frame's hardware time in ms."""
    return [int(round(float(times[i]) * 1000)) for i in range(0, len(times), chunk_size)]
