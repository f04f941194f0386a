"""External frames: areaDetector HDF5 resource/datum and ophyd-async stream_resource/stream_datum."""

from __future__ import annotations

import event_model
import h5py
import numpy as np
import pytest

from atomscale_bluesky.callback.external_files import (
    EPICS_EPOCH_OFFSET,
    ExternalDataError,
    ExternalNotReady,
    ExternalStore,
)


def _write(path, frames, *, epics_times=None, unique_ids=None):
    with h5py.File(path, "w") as f:
        f.create_dataset("/entry/data/data", data=frames)
        if epics_times is not None:
            sec = np.floor(epics_times - EPICS_EPOCH_OFFSET).astype(np.int64)
            nsec = np.round((epics_times - EPICS_EPOCH_OFFSET - sec) * 1e9).astype(np.int64)
            f.create_dataset("/entry/instrument/NDAttributes/NDArrayEpicsTSSec", data=sec)
            f.create_dataset("/entry/instrument/NDAttributes/NDArrayEpicsTSnSec", data=nsec)
        if unique_ids is not None:
            f.create_dataset("/entry/instrument/NDAttributes/NDArrayUniqueId", data=unique_ids)


def _stack(n, h=16, w=20):
    return np.arange(n * h * w, dtype=np.uint16).reshape(n, h, w)


def test_ad_hdf5_datum_reads_its_frames_per_point(tmp_path):
    frames = _stack(6)
    _write(tmp_path / "scan.h5", frames)
    run = event_model.compose_run()
    res = run.compose_resource(
        spec="AD_HDF5",
        root=str(tmp_path),
        resource_path="scan.h5",
        resource_kwargs={"frame_per_point": 2},
    )
    store = ExternalStore()
    store.add_resource(res.resource_doc)
    datums = [res.compose_datum(datum_kwargs={"point_number": i}) for i in range(3)]
    for d in datums:
        store.add_datum(d)
    got = store.read_datum(datums[1]["datum_id"])
    np.testing.assert_array_equal(got.frames, frames[2:4])
    assert got.timestamps is None
    store.close()


def test_stream_datum_reads_indices_with_epics_times_and_unique_ids(tmp_path):
    frames = _stack(5)
    times = 1_700_000_000.0 + np.arange(5) * 0.01
    _write(tmp_path / "det.h5", frames, epics_times=times, unique_ids=np.arange(10, 15))
    run = event_model.compose_run()
    sres = run.compose_stream_resource(
        mimetype="application/x-hdf5",
        uri=f"file://localhost{tmp_path}/det.h5",
        data_key="det-image",
        parameters={"dataset": "/entry/data/data", "chunk_shape": [1, 16, 20]},
    )
    store = ExternalStore()
    store.add_stream_resource(sres.stream_resource_doc)
    assert store.stream_key(sres.stream_resource_doc["uid"]) == "det-image"
    datum = sres.compose_stream_datum(indices={"start": 1, "stop": 4})
    got = store.read_stream_datum(datum)
    np.testing.assert_array_equal(got.frames, frames[1:4])
    assert got.timestamps == pytest.approx(times[1:4].tolist(), abs=1e-6)
    assert got.unique_ids == [11, 12, 13]


def test_missing_file_is_not_ready_and_too_few_frames_is_not_ready(tmp_path):
    run = event_model.compose_run()
    res = run.compose_resource(
        spec="AD_HDF5",
        root=str(tmp_path),
        resource_path="later.h5",
        resource_kwargs={"frame_per_point": 1},
    )
    store = ExternalStore()
    store.add_resource(res.resource_doc)
    datum = res.compose_datum(datum_kwargs={"point_number": 3})
    store.add_datum(datum)
    with pytest.raises(ExternalNotReady):
        store.read_datum(datum["datum_id"])
    _write(tmp_path / "later.h5", _stack(2))
    with pytest.raises(ExternalNotReady, match="holds 2 frames"):
        store.read_datum(datum["datum_id"])
    _write(tmp_path / "later.h5", _stack(4))  # the writer caught up: reopened and read
    assert store.read_datum(datum["datum_id"]).frames.shape == (1, 16, 20)


def test_a_file_not_hdf5_unknown_datum_and_spec_are_errors(tmp_path):
    (tmp_path / "junk.h5").write_bytes(b"this is not an HDF5 file" * 100)
    run = event_model.compose_run()
    res = run.compose_resource(
        spec="AD_HDF5",
        root=str(tmp_path),
        resource_path="junk.h5",
        resource_kwargs={"frame_per_point": 1},
    )
    store = ExternalStore()
    store.add_resource(res.resource_doc)
    datum = res.compose_datum(datum_kwargs={"point_number": 0})
    store.add_datum(datum)
    with pytest.raises(ExternalDataError, match="not a readable HDF5 file") as info:
        store.read_datum(datum["datum_id"])
    assert not isinstance(info.value, ExternalNotReady)
    with pytest.raises(ExternalDataError, match="never announced"):
        store.read_datum("no-such-datum")
    odd = run.compose_resource(
        spec="NO_SUCH_SPEC", root=str(tmp_path), resource_path="x", resource_kwargs={}
    )
    assert "no handler for resource spec 'NO_SUCH_SPEC'" in (
        store.add_resource(odd.resource_doc) or ""
    )
    odd_datum = odd.compose_datum(datum_kwargs={"point_number": 0})
    store.add_datum(odd_datum)
    with pytest.raises(ExternalDataError, match="no handler for resource spec") as info:
        store.read_datum(odd_datum["datum_id"])
    assert not isinstance(info.value, ExternalNotReady)


def test_a_file_whose_writer_has_not_flushed_its_header_is_not_ready(tmp_path):
    """Created, its data partly written, its superblock not on disk yet: retried, not lost."""
    (tmp_path / "writing.h5").write_bytes(b"\x00" * 4096 + b"raw chunk bytes" * 10)
    run = event_model.compose_run()
    res = run.compose_resource(
        spec="AD_HDF5_SWMR",
        root=str(tmp_path),
        resource_path="writing.h5",
        resource_kwargs={"frame_per_point": 1},
    )
    store = ExternalStore()
    store.add_resource(res.resource_doc)
    datum = res.compose_datum(datum_kwargs={"point_number": 0})
    store.add_datum(datum)
    with pytest.raises(ExternalNotReady, match="cannot be opened yet"):
        store.read_datum(datum["datum_id"])
    _write(tmp_path / "writing.h5", _stack(1))
    np.testing.assert_array_equal(store.read_datum(datum["datum_id"]).frames, _stack(1))
