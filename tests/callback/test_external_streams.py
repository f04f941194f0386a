"""ophyd-async stream resources: a fly scan's frames without times in the file stream while the
run goes on (timed at the declared cadence on this host, counted as such); TIFF series."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from atomscale_bluesky.callback import AtomscaleCallback

from .docs import T0, RunDocs

H, W = 24, 32


def feed_fly_scan(callback: Any, path: Path, fps: float, n: int, per_datum: int) -> RunDocs:
    """Feed ``callback`` a fly scan's documents: stream datums of ``path``'s frames, no events
    (the camera declares its cadence by AcquirePeriod); the run is left open."""
    rd = RunDocs.start()
    desc = rd.run.compose_descriptor(
        name="primary",
        data_keys={
            "det": {
                "source": "PV:FLY:HDF1:FullFileName_RBV",
                "dtype": "array",
                "shape": [1, H, W],
                "dtype_numpy": "|u1",
                "external": "STREAM:",
                "object_name": "det",
            }
        },
        configuration={
            "det": {
                "data": {"det_acquire_period": 1.0 / fps},
                "timestamps": {"det_acquire_period": T0},
                "data_keys": {
                    "det_acquire_period": {
                        "source": "PV:FLY:cam1:AcquirePeriod_RBV",
                        "dtype": "number",
                        "shape": [],
                    }
                },
            }
        },
        object_keys={"det": ["det"]},
    )
    sres = rd.run.compose_stream_resource(
        mimetype="application/x-hdf5",
        uri=f"file://localhost{path}",
        data_key="det",
        parameters={"dataset": "/entry/data/data", "chunk_shape": [1, H, W]},
    )
    callback("start", rd.docs[0][1])
    callback("descriptor", desc.descriptor_doc)
    callback("stream_resource", sres.stream_resource_doc)
    for start in range(0, n, per_datum):
        datum = sres.compose_stream_datum(
            indices={"start": start, "stop": start + per_datum},
            seq_nums={"start": start + 1, "stop": start + per_datum + 1},
            descriptor=desc.descriptor_doc,
        )
        callback("stream_datum", datum)
    return rd


def test_fly_scan_without_file_times_streams_live_at_the_declared_cadence(
    server, client, tmp_path: Path
):
    n, fps, per_datum = 150, 25.0, 10
    frames = np.random.default_rng(11).integers(1, 256, (n, H, W)).astype(np.uint8)
    path = tmp_path / "fly.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("/entry/data/data", data=frames)  # no NDAttributes: no frame times
    callback = AtomscaleCallback(client, stop_grace_s=0.0)
    rd = feed_fly_scan(callback, path, fps, n, per_datum)
    # the run has not ended: full chunks of its frames reach the server meanwhile
    deadline = time.monotonic() + 60
    while callback.counters.frames_pushed < 100 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert callback.counters.frames_pushed >= 100
    callback("stop", rd.run.compose_stop(exit_status="success"))
    assert callback.flush(60)
    callback.close()
    (summary,) = callback.summaries
    assert summary.errors == 0, summary.error_messages
    (rheed,) = summary.rheed
    assert rheed.frames == n and summary.lost == 0
    assert rheed.fps == fps and rheed.wall_clock_frames == n
    assert "150 frames without hardware time (host clock used)" in summary.text()
    np.testing.assert_array_equal(server.reader.frames(rheed.data_id), frames)
    chunks = sorted(server.reader.chunk_times(rheed.data_id), key=lambda c: c["idx"])
    assert [c["n_frames"] for c in chunks] == [50, 50, 50]
    for a, b in zip(chunks, chunks[1:], strict=False):  # frames spaced at 25 fps
        assert b["start_unix_ms_utc"] - a["start_unix_ms_utc"] >= 2000 - 5


def test_an_ophyd_async_tiff_stream_resource_is_read_frame_by_frame(server, client, tmp_path: Path):
    """ophyd-async's TIFF writer: the stream resource names the directory, parameters the
    template; each stream datum's rows are files, read as written, timed by their events."""
    import tifffile

    n, fps = 12, 10.0
    frames = np.random.default_rng(12).integers(1, 256, (n, H, W)).astype(np.uint8)
    for i, frame in enumerate(frames):
        tifffile.imwrite(tmp_path / f"det_{i:06d}.tiff", frame)
    rd = RunDocs.start()
    desc = rd.run.compose_descriptor(
        name="primary",
        data_keys={
            "det": {
                "source": "PV:TIF:TIFF1:FullFileName_RBV",
                "dtype": "array",
                "shape": [1, H, W],
                "dtype_numpy": "|u1",
                "external": "STREAM:",
                "object_name": "det",
            },
            "det_counter": {
                "source": "PV:TIF:cam1:ArrayCounter_RBV",
                "dtype": "integer",
                "shape": [],
                "object_name": "det",
            },
        },
        object_keys={"det": ["det", "det_counter"]},
    )
    rd.docs.append(("descriptor", desc.descriptor_doc))
    sres = rd.run.compose_stream_resource(
        mimetype="multipart/related;type=image/tiff",
        uri=f"file://localhost{tmp_path}/",
        data_key="det",
        parameters={"template": "det_{:06d}.tiff", "chunk_shape": [1, H, W]},
    )
    rd.docs.append(("stream_resource", sres.stream_resource_doc))
    times = T0 + np.arange(n) / fps
    for i in range(n):
        datum = sres.compose_stream_datum(
            indices={"start": i, "stop": i + 1},
            seq_nums={"start": i + 1, "stop": i + 2},
            descriptor=desc.descriptor_doc,
        )
        rd.docs.append(("stream_datum", datum))
        event = desc.compose_event(
            data={"det_counter": i + 1}, timestamps={"det_counter": float(times[i])}, seq_num=i + 1
        )
        rd.docs.append(("event", event))
    rd.stop()
    callback = AtomscaleCallback(client)
    rd.feed(callback)
    assert callback.flush(60)
    callback.close()
    (summary,) = callback.summaries
    assert summary.errors == 0, summary.error_messages
    (rheed,) = summary.rheed
    assert rheed.frames == n and summary.lost == 0 and rheed.wall_clock_frames == 0
    np.testing.assert_array_equal(server.reader.frames(rheed.data_id), frames)
    (chunk,) = server.reader.chunk_times(rheed.data_id)
    assert chunk["start_unix_ms_utc"] == int(round(times[0] * 1000))


class _HDF5Flyer:
    """A fly-scanning detector (bluesky's Flyable + WritesStreamAssets protocols): frames go to
    an HDF5 file without per-frame times, announced with stream_resource/stream_datum."""

    parent = None

    def __init__(self, name: str, path: Path, frames: np.ndarray) -> None:
        import event_model

        self.name, self.path, self.frames = name, path, frames
        self.written = 0
        self.emitted = 0
        self._bundle = event_model.compose_stream_resource(
            mimetype="application/x-hdf5",
            uri=f"file://localhost{path}",
            data_key=name,
            parameters={"dataset": "/entry/data/data", "chunk_shape": [1, H, W]},
        )
        self._announced = False
        self._file = h5py.File(path, "w", libver="latest", locking=False)
        self._file.create_dataset(
            "/entry/data/data", (0, H, W), np.uint8, maxshape=(None, H, W), chunks=(1, H, W)
        )
        self._file.swmr_mode = True  # as the HDF5 plugin in SWMR mode: readable while written

    def write(self, n: int) -> None:
        """The detector writes ``n`` more frames."""
        data = self._file["/entry/data/data"]
        data.resize(self.written + n, axis=0)
        data[self.written :] = self.frames[self.written : self.written + n]
        data.flush()
        self.written += n

    def close(self) -> None:
        self._file.close()

    def kickoff(self) -> Any:
        from ophyd.status import Status

        status = Status(obj=self)
        status.set_finished()
        return status

    complete = kickoff

    def describe_collect(self) -> dict[str, Any]:
        return {
            self.name: {
                "source": "PV:FLY:HDF1:FullFileName_RBV",
                "dtype": "array",
                "shape": [1, H, W],
                "dtype_numpy": "|u1",
                "external": "STREAM:",
            }
        }

    def get_index(self) -> int:
        return self.written

    def collect_asset_docs(self, index: int | None = None) -> Any:
        if not self._announced:
            self._announced = True
            yield "stream_resource", self._bundle.stream_resource_doc
        stop = self.written if index is None else min(index, self.written)
        if stop > self.emitted:
            yield (
                "stream_datum",
                self._bundle.compose_stream_datum(indices={"start": self.emitted, "stop": stop}),
            )
            self.emitted = stop


def test_a_runengine_fly_scan_streams_its_frames_before_the_run_ends(
    server, client, RE, tmp_path: Path
):
    import bluesky.plan_stubs as bps

    n = 150
    frames = np.random.default_rng(13).integers(1, 256, (n, H, W)).astype(np.uint8)
    flyer = _HDF5Flyer("det", tmp_path / "fly.h5", frames)
    callback = AtomscaleCallback(client, fps=25.0)
    pushed_before_end: list[int] = []

    def fly() -> Any:
        yield from bps.open_run()
        yield from bps.declare_stream(flyer, name="primary", collect=True)
        yield from bps.kickoff(flyer, wait=True)
        for _ in range(n // 10):
            flyer.write(10)
            yield from bps.collect(flyer, name="primary")
        deadline = time.monotonic() + 60
        while callback.counters.frames_pushed < 100 and time.monotonic() < deadline:
            yield from bps.sleep(0.05)
        pushed_before_end.append(callback.counters.frames_pushed)
        yield from bps.complete(flyer, wait=True)
        yield from bps.close_run()

    token = RE.subscribe(callback)
    try:
        RE(fly())
    finally:
        RE.unsubscribe(token)
    assert callback.flush(60)
    callback.close()
    flyer.close()
    assert pushed_before_end[0] >= 100  # two full chunks were out while the run went on
    (summary,) = callback.summaries
    assert summary.errors == 0, summary.error_messages
    (rheed,) = summary.rheed
    assert rheed.frames == n and summary.lost == 0 and rheed.wall_clock_frames == n
    np.testing.assert_array_equal(server.reader.frames(rheed.data_id), frames)
