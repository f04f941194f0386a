"""A stock ophyd ``HDF5Plugin`` + ``FileStoreHDF5IterativeWrite`` detector streams unmodified.

Real simulated camera IOC writing real HDF5 files, a real RunEngine, the callback and the local
server: the stored frames are the file's frames, each chunk starting at its frame's IOC time.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from atomscale_bluesky.callback import AtomscaleCallback

from .frames_check import assert_stored_equals_file, file_frames

pytestmark = pytest.mark.timeout(300)


def make_detector(prefix: str, directory: Path):
    from ophyd import Component as Cpt
    from ophyd.areadetector import HDF5Plugin, SimDetector, SingleTrigger
    from ophyd.areadetector.filestore_mixins import FileStoreHDF5IterativeWrite

    class HDF5PluginWithFileStore(HDF5Plugin, FileStoreHDF5IterativeWrite):
        pass

    class RheedDetector(SingleTrigger, SimDetector):
        hdf5 = Cpt(
            HDF5PluginWithFileStore,
            "HDF1:",
            write_path_template=str(directory) + "/",
            root="/",
        )

    det = RheedDetector(prefix, name="rheed")
    det.hdf5.kind = "normal"  # ophyd's areaDetector reads nothing until a plugin is made readable
    det.wait_for_connection()
    return det


def test_ophyd_filestore_hdf5_detector_streams_its_file(
    RE, stock_camera, local_server, client, tmp_path
):
    from bluesky.plans import count

    det = make_detector(stock_camera.prefix, tmp_path)
    det.cam.stage_sigs["num_images"] = 3  # three frames per trigger
    callback = AtomscaleCallback(client)
    docs: list[tuple[str, dict]] = []
    try:
        RE.subscribe(callback)
        RE.subscribe(lambda name, doc: docs.append((name, doc)))
        RE(count([det], num=4))
        assert callback.flush(120)
    finally:
        callback.close()
    (resource,) = [doc for name, doc in docs if name == "resource"]
    assert resource["spec"] == "AD_HDF5"
    path = Path(resource["root"]) / resource["resource_path"]
    frames, _, _ = file_frames(path)
    assert frames.shape == (12, 480, 640) and frames.dtype.str == "|u1"
    (summary,) = callback.summaries
    assert summary.lost == 0

    (rheed,) = summary.rheed
    assert assert_stored_equals_file(local_server, rheed.data_id, path, 8) == 12
