"""External frames through the handler registry, end to end: a real RunEngine, devices writing
files as areaDetector's plugins and ophyd.sim do, the local server; stored pixels compared."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from bluesky.plans import count
from ophyd.sim import SynSignalWithRegistry

from atomscale_bluesky.callback import AtomscaleCallback

from .file_devices import FileCamera


def _run(server, client, RE, devices: list[Any], num: int, **options: Any):
    callback = AtomscaleCallback(client, **options)
    token = RE.subscribe(callback)
    try:
        RE(count(devices, num=num))
    finally:
        RE.unsubscribe(token)
    assert callback.flush(60)
    callback.close()
    (summary,) = callback.summaries
    return summary


def _ms(t: float) -> int:
    return int(round(t * 1000))


def test_ophyd_sim_registry_detector_streams_through_the_npy_seq_handler(
    server, client, RE, tmp_path: Path
):
    rng = np.random.default_rng(3)
    img = SynSignalWithRegistry(
        func=lambda: rng.integers(0, 256, (20, 30), dtype=np.uint8),
        name="img",
        save_path=str(tmp_path),
    )
    summary = _run(server, client, RE, [img], 6)
    assert summary.errors == 0, summary.error_messages
    (rheed,) = summary.rheed
    assert rheed.frames == 6 and summary.lost == 0
    files = sorted(tmp_path.glob("*.npy"), key=lambda p: int(p.stem.rsplit("_", 1)[1]))
    written = np.stack([np.load(p) for p in files])  # what the device wrote, in datum order
    assert written.shape == (6, 20, 30) and len(np.unique(written.reshape(6, -1), axis=0)) == 6
    np.testing.assert_array_equal(server.reader.frames(rheed.data_id), written)


@pytest.mark.parametrize("layout", ["AD_HDF5", "AD_TIFF"])
def test_files_written_under_the_iocs_root_are_read_here_through_root_map(
    server, client, RE, tmp_path: Path, layout
):
    cam = FileCamera(name="cam", write_dir=tmp_path, ioc_root="/ioc/data", layout=layout)
    summary = _run(server, client, RE, [cam], 8, root_map={"/ioc/data": str(tmp_path)})
    assert summary.errors == 0, summary.error_messages
    (rheed,) = summary.rheed
    assert rheed.frames == 8 and summary.lost == 0 and rheed.wall_clock_frames == 0
    np.testing.assert_array_equal(
        server.reader.frames(rheed.data_id), np.stack([f for _, f in cam.produced])
    )
    (chunk, *_) = server.reader.chunk_times(rheed.data_id)
    assert chunk["start_unix_ms_utc"] == _ms(cam.produced[0][0])


@pytest.mark.parametrize("times", ["epics", "timestamp"])
def test_an_hdf5_file_behind_its_datums_is_waited_for_and_its_frame_times_used(
    server, client, RE, tmp_path: Path, times
):
    """The writer holds the file open (SWMR) and is two frames behind the datums; the frames'
    times come from the file's NDAttributes (EPICS seconds/nanoseconds, else NDArrayTimeStamp),
    not from the events."""
    cam = FileCamera(
        name="cam", write_dir=tmp_path, lag=2, times=times, fps=25.0, stamp_events=False
    )
    summary = _run(server, client, RE, [cam], 30)
    assert summary.errors == 0, summary.error_messages
    (rheed,) = summary.rheed
    assert rheed.frames == 30 and summary.lost == 0
    assert rheed.fps == pytest.approx(25.0, rel=0.01)
    np.testing.assert_array_equal(
        server.reader.frames(rheed.data_id), np.stack([f for _, f in cam.produced])
    )
    starts = [c["start_unix_ms_utc"] for c in server.reader.chunk_times(rheed.data_id)]
    per_chunk = rheed.chunk_size or 0
    assert starts == [_ms(cam.produced[i][0]) for i in range(0, 30, per_chunk)]


def test_a_file_unreadable_until_its_writer_closes_it_is_not_taken_for_lost(
    server, client, RE, tmp_path: Path
):
    """HDF5 written without SWMR: the file exists from the start but opens only once closed,
    after the last frame; the run lasts longer than external_timeout_s meanwhile."""
    cam = FileCamera(name="cam", write_dir=tmp_path, closed_until_unstage=True)
    callback = AtomscaleCallback(client, external_timeout_s=0.3)
    token = RE.subscribe(callback)
    try:
        RE(count([cam], num=8, delay=0.1))
    finally:
        RE.unsubscribe(token)
    assert callback.flush(60)
    callback.close()
    (summary,) = callback.summaries
    assert summary.errors == 0, summary.error_messages
    (rheed,) = summary.rheed
    assert rheed.frames == 8 and summary.lost == 0
    np.testing.assert_array_equal(
        server.reader.frames(rheed.data_id), np.stack([f for _, f in cam.produced])
    )


def test_a_file_that_never_appears_is_reported_once_with_its_path(
    server, client, RE, tmp_path: Path, caplog
):
    cam = FileCamera(name="cam", write_dir=tmp_path, ioc_root="/nowhere/ioc", write=False)
    caplog.set_level(logging.INFO, logger="atomscale_bluesky.callback")
    summary = _run(server, client, RE, [cam], 5, external_timeout_s=0.5)
    (rheed,) = summary.rheed
    assert rheed.frames == 0 and rheed.external_failed == 5 and summary.lost == 5
    about = [m for m in summary.error_messages if "/nowhere/ioc/run0/img_000.h5" in m]
    assert len(about) == 1 and "does not exist" in about[0], summary.error_messages
    logged = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(logged) == 1 and logged[0].exc_info is None  # no traceback, not once per frame
    assert "/nowhere/ioc/run0/img_000.h5" in logged[0].getMessage()


class _RawFramesHandler:
    """A handler as handler packages write them: ``cls(path, **resource_kwargs)``, called with
    the datum kwargs, returning the array (here raw bytes, one file per point)."""

    def __init__(self, path: str, shape: list[int]) -> None:
        self.path, self.shape = Path(path), tuple(shape)

    def __call__(self, point_number: int) -> np.ndarray:
        data = (self.path / f"{point_number}.raw").read_bytes()
        return np.frombuffer(data, np.uint8).reshape(self.shape)


class _RawCamera(FileCamera):
    """Writes ``<n>.raw`` files under spec ``RAW_TEST`` (no built-in handler knows it)."""

    def stage(self) -> list[Any]:
        super().stage()
        _, resource = self._docs[-1]
        resource["resource_kwargs"] = {"shape": list(self.shape)}
        return [self]

    def _flush(self, upto: int) -> None:
        for n in range(self._written, max(self._written, upto)):
            (self.write_dir / self._rel / f"{n}.raw").write_bytes(self.produced[n][1].tobytes())
        self._written = max(self._written, upto)


def test_a_spec_without_handler_is_reported_once_and_a_registered_handler_reads_it(
    server, client, RE, tmp_path: Path, caplog
):
    cam = _RawCamera(name="cam", write_dir=tmp_path, layout="RAW", spec="RAW_TEST")
    summary = _run(server, client, RE, [cam], 4)
    (rheed,) = summary.rheed
    assert rheed.frames == 0 and rheed.external_failed == 4
    assert len([m for m in summary.error_messages if "RAW_TEST" in m]) == 1
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "RAW_TEST" in errors[0].getMessage()

    summary = _run(server, client, RE, [cam], 4, handler_registry={"RAW_TEST": _RawFramesHandler})
    assert summary.errors == 0, summary.error_messages
    (rheed,) = summary.rheed
    np.testing.assert_array_equal(
        server.reader.frames(rheed.data_id), np.stack([f for _, f in cam.produced])
    )


def test_root_map_maps_the_iocs_root_and_paths_under_a_mapped_directory():
    from atomscale_bluesky.callback.handlers import HandlerRegistry

    registry = HandlerRegistry(root_map={"/epics/data": "/mnt/ioc", "/": "/elsewhere"})
    assert registry.local_path("/epics/data", "x/a.h5") == "/mnt/ioc/x/a.h5"  # as the Filler
    assert registry.local_path("/", "epics/data/a.h5") == "/elsewhere/epics/data/a.h5"
    plain = HandlerRegistry(root_map={"/epics/data/": "/mnt/ioc"})
    assert plain.local_path("", "/epics/data/2024/a.h5") == "/mnt/ioc/2024/a.h5"  # stream uris
    assert plain.local_path("", "/epics/database/a.h5") == "/epics/database/a.h5"


_PLUGIN = """
import numpy as np
from pathlib import Path


class RawHandler:
    def __init__(self, path, shape):
        self.path, self.shape = Path(path), tuple(shape)

    def __call__(self, point_number):
        data = (self.path / f"{point_number}.raw").read_bytes()
        return np.frombuffer(data, np.uint8).reshape(self.shape)
"""


def test_a_handler_package_installed_with_an_entry_point_is_used(
    server, client, RE, tmp_path: Path, monkeypatch
):
    """A package declaring ``databroker.handlers`` entry points (as area-detector-handlers does)."""
    site = tmp_path / "site"
    (site / "fake_raw_handlers-1.0.dist-info").mkdir(parents=True)
    (site / "fake_raw_handlers.py").write_text(_PLUGIN)
    (site / "fake_raw_handlers-1.0.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: fake-raw-handlers\nVersion: 1.0\n"
    )
    (site / "fake_raw_handlers-1.0.dist-info" / "entry_points.txt").write_text(
        "[databroker.handlers]\nRAW_TEST = fake_raw_handlers:RawHandler\n"
    )
    monkeypatch.syspath_prepend(str(site))
    cam = _RawCamera(name="cam", write_dir=tmp_path / "data", layout="RAW", spec="RAW_TEST")
    summary = _run(server, client, RE, [cam], 4)
    assert summary.errors == 0, summary.error_messages
    (rheed,) = summary.rheed
    np.testing.assert_array_equal(
        server.reader.frames(rheed.data_id), np.stack([f for _, f in cam.produced])
    )
