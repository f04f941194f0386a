"""ophyd-async stream resources: a fly scan's frames without times in the file stream while the
run goes on (timed at the declared cadence on this host, counted as such); TIFF series."""

from __future__ import annotations

import time
from pathlib import Path

import h5py
import numpy as np

from atomscale_bluesky.callback import AtomscaleCallback

from .docs import T0, RunDocs

H, W = 24, 32


def test_fly_scan_without_file_times_streams_live_at_the_declared_cadence(
    server, client, tmp_path: Path
):
    n, fps, per_datum = 150, 25.0, 10
    frames = np.random.default_rng(11).integers(1, 256, (n, H, W)).astype(np.uint8)
    path = tmp_path / "fly.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("/entry/data/data", data=frames)  # no NDAttributes: no frame times
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
    callback = AtomscaleCallback(client, stop_grace_s=0.0)
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
