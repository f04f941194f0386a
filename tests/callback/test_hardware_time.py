"""Every frame's stored time is its hardware time, and fps comes from hardware times, in every
way Bluesky delivers frames: several frames per event, a declared AcquirePeriod that is wrong,
stream datums timed by their events, IOC clocks behind the RunEngine host, monitors' first values.
Documents are composed with event_model and read back from the local server."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from atomscale_bluesky.callback import AtomscaleCallback

from .docs import T0, RunDocs

H, W = 24, 32


def _frames(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(1, 256, size=(n, H, W)).astype(np.uint8)


def _descriptor(
    rd: RunDocs,
    keys: dict[str, dict[str, Any]],
    config: dict[str, Any] | None = None,
    name: str = "primary",
) -> Any:
    for dk in keys.values():
        dk.setdefault("object_name", "cam")
    desc = rd.run.compose_descriptor(
        name=name,
        data_keys=keys,
        configuration={"cam": config or {"data": {}, "timestamps": {}, "data_keys": {}}},
        object_keys={"cam": list(keys)},
    )
    rd.docs.append(("descriptor", desc.descriptor_doc))
    return desc


def _image_key(shape: list[int], **extra: Any) -> dict[str, Any]:
    return {
        "source": "PV:CAM:image1:ArrayData",
        "dtype": "array",
        "shape": shape,
        "dtype_numpy": "|u1",
        **extra,
    }


def _period_config(fps: float) -> dict[str, Any]:
    return {
        "data": {"cam_acquire_period": 1.0 / fps},
        "timestamps": {"cam_acquire_period": T0},
        "data_keys": {
            "cam_acquire_period": {
                "source": "PV:CAM:cam1:AcquirePeriod_RBV",
                "dtype": "number",
                "shape": [],
            }
        },
    }


def _upload(server, client, rd: RunDocs, **options: Any):
    rd.stop()
    callback = AtomscaleCallback(client, **options)
    rd.feed(callback)
    assert callback.flush(60)
    callback.close()
    (summary,) = callback.summaries
    assert summary.errors == 0, summary.error_messages
    return summary


def _one_frame_per_event(rd: RunDocs, desc: Any, frames: np.ndarray, times: np.ndarray) -> None:
    """One event per frame, each stamped with its own hardware time."""
    for i, (frame, ts) in enumerate(zip(frames, times, strict=True)):
        event = desc.compose_event(
            data={"cam_image": frame}, timestamps={"cam_image": float(ts)}, seq_num=i + 1
        )
        rd.docs.append(("event", event))


def _stream_datum(sres: Any, desc: Any, e: int) -> dict[str, Any]:
    """The stream datum of event ``e``: the detector's ``e``-th collection in the file."""
    return sres.compose_stream_datum(
        indices={"start": e, "stop": e + 1},
        seq_nums={"start": e + 1, "stop": e + 2},
        descriptor=desc.descriptor_doc,
    )


def _stored_times(server, data_id: str) -> list[tuple[int, int, int]]:
    """(start ms, end ms, frames) of every stored chunk, in order."""
    chunks = sorted(server.reader.chunk_times(data_id), key=lambda c: c["idx"])
    return [(c["start_unix_ms_utc"], c["end_unix_ms_utc"], c["n_frames"]) for c in chunks]


def _ms(t: float) -> int:
    return int(round(t * 1000))


def _assert_chunks_start_at(server, rheed, times: np.ndarray) -> None:
    """Each stored chunk starts at its first frame's hardware time (to the ms)."""
    offset = 0
    for start, end, n in _stored_times(server, rheed.data_id):
        assert start == _ms(float(times[offset]))
        assert end == start + int(n / rheed.fps * 1000)
        offset += n
    assert offset == len(times)


@pytest.mark.parametrize("form", ["event", "event_page"])
def test_several_frames_per_event_without_fps_are_spaced_at_the_measured_cadence(
    server, client, form
):
    fps, per, events = 20.0, 5, 12
    frames = _frames(per * events, 1)
    times = T0 + np.arange(per * events) / fps
    rd = RunDocs.start()
    desc = _descriptor(rd, {"cam_image": _image_key([per, H, W])})
    docs = []
    for e in range(events):
        last = float(times[(e + 1) * per - 1])  # an event carries its newest frame's time
        docs.append(
            desc.compose_event(
                data={"cam_image": frames[e * per : (e + 1) * per]},
                timestamps={"cam_image": last},
                seq_num=e + 1,
            )
        )
    if form == "event":
        rd.docs.extend(("event", d) for d in docs)
    else:
        import event_model

        rd.docs.append(("event_page", event_model.pack_event_page(*docs)))
    summary = _upload(server, client, rd)
    (rheed,) = summary.rheed
    assert rheed.fps == pytest.approx(fps, rel=0.02) and rheed.fps_source == "measured"
    assert rheed.frames == per * events and summary.lost == 0
    np.testing.assert_array_equal(server.reader.frames(rheed.data_id), frames)
    _assert_chunks_start_at(server, rheed, times)
    assert server.reader.rheed_stream(rheed.data_id)["fps"] == pytest.approx(fps, rel=0.02)


def test_hdf5_datum_of_several_frames_is_spaced_at_the_measured_cadence(
    server, client, tmp_path: Path
):
    fps, per, events = 20.0, 5, 10
    frames = _frames(per * events, 2)
    times = T0 + np.arange(per * events) / fps
    path = tmp_path / "multi.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("/entry/data/data", data=frames)  # no per-frame times in the file
    rd = RunDocs.start()
    desc = _descriptor(rd, {"cam_image": _image_key([per, H, W], external="FILESTORE:")})
    res = rd.run.compose_resource(
        spec="AD_HDF5",
        root=str(tmp_path),
        resource_path=path.name,
        resource_kwargs={"frame_per_point": per},
    )
    rd.docs.append(("resource", res.resource_doc))
    for e in range(events):
        datum = res.compose_datum(datum_kwargs={"point_number": e})
        rd.docs.append(("datum", datum))
        rd.docs.append(
            (
                "event",
                desc.compose_event(
                    data={"cam_image": datum["datum_id"]},
                    filled={"cam_image": False},
                    timestamps={"cam_image": float(times[(e + 1) * per - 1])},
                    seq_num=e + 1,
                ),
            )
        )
    summary = _upload(server, client, rd)
    (rheed,) = summary.rheed
    assert rheed.fps == pytest.approx(fps, rel=0.02) and rheed.frames == per * events
    np.testing.assert_array_equal(server.reader.frames(rheed.data_id), frames)
    _assert_chunks_start_at(server, rheed, times)


def test_a_declared_acquire_period_that_disagrees_with_the_cadence_loses(server, client):
    real, declared, n = 20.0, 100.0, 60  # AcquireTime longer than AcquirePeriod: 20 fps really
    frames = _frames(n, 3)
    times = T0 + np.arange(n) / real
    rd = RunDocs.start()
    desc = _descriptor(rd, {"cam_image": _image_key([H, W])}, _period_config(declared))
    _one_frame_per_event(rd, desc, frames, times)
    summary = _upload(server, client, rd)
    (rheed,) = summary.rheed
    assert rheed.fps == pytest.approx(real, rel=0.02) and rheed.fps_source == "measured"
    assert rheed.fps_declared == pytest.approx(declared)
    assert rheed.fps_declared_source == "AcquirePeriod"
    assert "declared 100 fps (AcquirePeriod) disagrees with the measured 20 fps" in summary.text()
    assert [n for _, _, n in _stored_times(server, rheed.data_id)] == [40, 20]  # not 60 chunks
    _assert_chunks_start_at(server, rheed, times)


def test_a_declared_acquire_period_that_agrees_is_used(server, client):
    n = 30
    times = T0 + np.arange(n) / 20.4  # within 10% of the declared 20 fps
    rd = RunDocs.start()
    desc = _descriptor(rd, {"cam_image": _image_key([H, W])}, _period_config(20.0))
    frames = _frames(n, 4)
    _one_frame_per_event(rd, desc, frames, times)
    summary = _upload(server, client, rd)
    (rheed,) = summary.rheed
    assert rheed.fps == 20.0 and rheed.fps_source == "AcquirePeriod"
    assert rheed.fps_declared is None and "disagrees" not in summary.text()


def _stream_run(
    tmp_path: Path,
    frames: np.ndarray,
    per: int,
    *,
    file_times: np.ndarray | None,
    counter: bool = True,
):
    """A stream resource over an HDF5 file of ``frames``; ``per`` rows per event index."""
    path = tmp_path / "stream.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("/entry/data/data", data=frames)
        if file_times is not None:
            from atomscale_bluesky.callback.external_files import EPICS_EPOCH_OFFSET

            rel = file_times - EPICS_EPOCH_OFFSET
            sec = np.floor(rel).astype(np.int64)
            nsec = np.round((rel - sec) * 1e9).astype(np.int64)
            f.create_dataset("/entry/instrument/NDAttributes/NDArrayEpicsTSSec", data=sec)
            f.create_dataset("/entry/instrument/NDAttributes/NDArrayEpicsTSnSec", data=nsec)
    rd = RunDocs.start()
    keys = {
        "cam_image": _image_key([per, H, W], external="STREAM:"),
        "cam_array_counter": {
            "source": "PV:CAM:cam1:ArrayCounter_RBV",
            "dtype": "integer",
            "shape": [],
        },
        "heater_setpoint": {
            "source": "PV:HEATER:SP",
            "dtype": "number",
            "shape": [],
            "object_name": "heater",
        },
    }
    if not counter:
        del keys["cam_array_counter"]
    desc = _descriptor(rd, keys)
    sres = rd.run.compose_stream_resource(
        mimetype="application/x-hdf5",
        uri=f"file://localhost{path}",
        data_key="cam_image",
        parameters={"dataset": "/entry/data/data", "chunk_shape": [per, H, W]},
    )
    rd.docs.append(("stream_resource", sres.stream_resource_doc))
    return rd, desc, sres


def test_stream_datum_step_scan_frames_take_their_cameras_time_not_another_keys(
    server, client, tmp_path: Path
):
    events, per, fps = 20, 2, 10.0  # collections_per_event = 2: rows are event x 2
    n = events * per
    frames = _frames(n, 5)
    times = T0 + np.arange(n) / fps
    rd, desc, sres = _stream_run(tmp_path, frames, per, file_times=None)
    for e in range(events):
        rd.docs.append(("stream_datum", _stream_datum(sres, desc, e)))
        last = float(times[(e + 1) * per - 1])
        rd.docs.append(
            (
                "event",
                desc.compose_event(
                    data={"cam_array_counter": (e + 1) * per, "heater_setpoint": 600.0},
                    # the setpoint was last written ten minutes before the run: its stamp never changes
                    timestamps={"cam_array_counter": last, "heater_setpoint": T0 - 600.0},
                    seq_num=e + 1,
                ),
            )
        )
    summary = _upload(server, client, rd)
    (rheed,) = summary.rheed
    assert rheed.frames == n and rheed.duplicates == 0 and rheed.stale == 0
    assert rheed.wall_clock_frames == 0 and summary.lost == 0
    assert rheed.fps == pytest.approx(fps, rel=0.02)
    np.testing.assert_array_equal(server.reader.frames(rheed.data_id), frames)
    _assert_chunks_start_at(server, rheed, times)


def test_stream_datum_without_any_frame_time_falls_back_to_the_event_time_and_says_so(
    server, client, tmp_path: Path
):
    events, fps = 12, 10.0
    frames = _frames(events, 6)
    rd, desc, sres = _stream_run(tmp_path, frames, 1, file_times=None, counter=False)
    for e in range(events):
        rd.docs.append(("stream_datum", _stream_datum(sres, desc, e)))
        event = desc.compose_event(
            data={"heater_setpoint": 600.0},
            timestamps={"heater_setpoint": T0 - 600.0},
            seq_num=e + 1,
        )
        event["time"] = T0 + e / fps
        rd.docs.append(("event", event))
    summary = _upload(server, client, rd)
    (rheed,) = summary.rheed
    assert rheed.frames == events and rheed.wall_clock_frames == events
    assert "12 frames without hardware time (host clock used)" in summary.text()
    _assert_chunks_start_at(server, rheed, T0 + np.arange(events) / fps)


def test_stream_datum_with_file_times_streams_in_a_fly_scan_without_events(
    server, client, tmp_path: Path
):
    n, fps = 40, 25.0
    frames = _frames(n, 7)
    times = T0 + np.arange(n) / fps
    rd, desc, sres = _stream_run(tmp_path, frames, 1, file_times=times)
    for start in range(0, n, 8):  # collect(): stream datums, no events
        rd.docs.append(
            (
                "stream_datum",
                sres.compose_stream_datum(
                    indices={"start": start, "stop": start + 8},
                    seq_nums={"start": start + 1, "stop": start + 9},
                    descriptor=desc.descriptor_doc,
                ),
            )
        )
    summary = _upload(server, client, rd)
    (rheed,) = summary.rheed
    assert rheed.frames == n and rheed.wall_clock_frames == 0
    assert rheed.fps == pytest.approx(fps, rel=0.02)
    _assert_chunks_start_at(server, rheed, times)


@pytest.mark.parametrize("ioc_offset_s", [-3.0, 0.0, 3.0])
def test_triggered_frames_are_never_stale_whatever_the_ioc_clock(server, client, ioc_offset_s):
    n = 10
    frames = _frames(n, 8)
    rd = RunDocs.start()
    start_time = rd.run.start_doc["time"]
    times = start_time + ioc_offset_s + 0.5 + np.arange(n) / 2.0  # the IOC's clock, 2 fps
    desc = _descriptor(rd, {"cam_image": _image_key([H, W])})
    _one_frame_per_event(rd, desc, frames, times)
    summary = _upload(server, client, rd)
    (rheed,) = summary.rheed
    assert rheed.frames == n and rheed.stale == 0 and summary.lost == 0
    np.testing.assert_array_equal(server.reader.frames(rheed.data_id), frames)
    _assert_chunks_start_at(server, rheed, times)


@pytest.mark.parametrize("paused", [True, False], ids=["idle-camera", "running-camera"])
def test_a_monitors_first_value_is_stale_only_when_the_camera_paused_after_it(
    server, client, paused
):
    fps, n = 20.0, 30
    frames = _frames(n + 1, 9)
    rd = RunDocs.start()
    # the IOC's clock runs 3 s behind the host: every frame is "before the run" by host time
    t1 = rd.run.start_doc["time"] - 3.0
    first = t1 - (120.0 if paused else 1 / fps)
    times = np.concatenate([[first], t1 + np.arange(n) / fps])
    desc = _descriptor(rd, {"cam_image": _image_key([H, W])}, name="cam_image_monitor")
    for i in range(n + 1):
        rd.docs.append(
            (
                "event",
                desc.compose_event(
                    data={"cam_image": frames[i]},
                    timestamps={"cam_image": float(times[i])},
                    seq_num=i + 1,
                ),
            )
        )
    summary = _upload(server, client, rd)
    (rheed,) = summary.rheed
    kept = 1 if paused else 0
    assert rheed.stale == kept and rheed.frames == n + 1 - kept and summary.lost == 0
    np.testing.assert_array_equal(server.reader.frames(rheed.data_id), frames[kept:])
    _assert_chunks_start_at(server, rheed, times[kept:])
    assert math.isclose(rheed.fps, fps, rel_tol=0.02)
