"""ophyd-async's areaDetector ``SimDetector`` with its HDF writer streams unmodified.

stream_resource/stream_datum documents point into the file the simulated IOC writes (SWMR, as
ophyd-async configures it); the stored frames are the file's, with its per-frame IOC times. The
fly scan's frames stream while the file is still being written (one stream_datum per flush).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from atomscale_bluesky.callback import AtomscaleCallback

from .frames_check import assert_stored_equals_file, file_frames

pytestmark = pytest.mark.timeout(300)


def make_detector(prefix: str, directory: Path) -> Any:
    from ophyd_async.core import StaticFilenameProvider, StaticPathProvider, init_devices
    from ophyd_async.epics.adcore import ADWriterFactory
    from ophyd_async.epics.adsimdetector import SimDetector

    path_provider = StaticPathProvider(StaticFilenameProvider("rheed"), directory)
    with init_devices():  # after the RunEngine (fixture) exists
        det = SimDetector(prefix, ADWriterFactory.hdf(path_provider), name="rheed")
    return det


def _run(RE: Any, plan: Any, client: Any) -> tuple[AtomscaleCallback, list[tuple[str, dict]]]:
    callback = AtomscaleCallback(client)
    docs: list[tuple[str, dict]] = []
    RE.subscribe(callback)
    RE.subscribe(lambda name, doc: docs.append((name, doc)))
    try:
        RE(plan)
        assert callback.flush(120)
    finally:
        callback.close()
    return callback, docs


def _file_of(docs: list[tuple[str, dict]]) -> Path:
    uris = {d["uri"] for n, d in docs if n == "stream_resource" and d["data_key"] == "rheed"}
    (uri,) = uris
    return Path(uri.removeprefix("file://localhost").removeprefix("file://"))


def test_ophyd_async_hdf_detector_step_scan(RE, stock_camera, local_server, client, tmp_path):
    from bluesky.plans import count

    det = make_detector(stock_camera.prefix, tmp_path)
    callback, docs = _run(RE, count([det], num=5), client)
    assert sum(1 for n, _ in docs if n == "stream_datum") == 5
    path = _file_of(docs)
    frames, _, _ = file_frames(path)
    assert frames.shape == (5, 480, 640)
    (summary,) = callback.summaries
    assert summary.lost == 0
    (rheed,) = summary.rheed
    assert assert_stored_equals_file(local_server, rheed.data_id, path, 8) == 5


@pytest.mark.slow
def test_ophyd_async_hdf_detector_fly_scan_streams_live(
    RE, stock_camera, local_server, client, tmp_path
):
    from bluesky import plan_stubs as bps
    from bluesky import preprocessors as bpp
    from ophyd_async.core import TriggerInfo

    det = make_detector(stock_camera.prefix, tmp_path)
    n_frames = 300  # 5 s at 60 fps: the file is still growing when the first chunk is stored
    seen_live: list[tuple[int, bool]] = []  # (frames stored, capture still running)

    def stored_frames() -> int:
        streams = local_server.reader.streams()
        return sum(int(s.get("n_frames") or 0) for s in streams if "n_frames" in s)

    @bpp.stage_decorator([det])
    @bpp.run_decorator()
    def fly():
        info = TriggerInfo(number_of_events=n_frames, livetime=0.005, deadtime=1 / 60 - 0.005)
        yield from bps.prepare(det, info, wait=True)
        yield from bps.declare_stream(det, name="primary", collect=True)
        yield from bps.kickoff(det, wait=True)
        yield from bps.complete(det, group="fly")
        for _ in range(600):  # collect as the file grows, until the server holds frames
            yield from bps.collect(det)
            if stored_frames() > 0:
                capturing = (yield from bps.rd(det.hdf.capture)) is True
                seen_live.append((stored_frames(), capturing))
                break
            yield from bps.sleep(0.1)
        yield from bps.wait(group="fly")
        yield from bps.collect(det)

    callback, docs = _run(RE, fly(), client)
    assert seen_live and seen_live[0][1], seen_live  # stored while the IOC was still writing
    assert sum(1 for n, _ in docs if n == "stream_datum") > 1
    path = _file_of(docs)
    frames, _, _ = file_frames(path)
    assert frames.shape == (n_frames, 480, 640)
    (summary,) = callback.summaries
    assert summary.lost == 0
    (rheed,) = summary.rheed
    assert assert_stored_equals_file(local_server, rheed.data_id, path, 8) == n_frames
