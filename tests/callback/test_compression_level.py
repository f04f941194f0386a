"""The callback's ``compression_level``: frames stream at the chosen zstd level, read back equal."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from bluesky.plans import count

from atomscale_bluesky.callback import AtomscaleCallback

from .devices import MemoryCamera


def test_a_fast_level_streams_every_frame_unchanged(server, client, RE, caplog):
    caplog.set_level(logging.INFO, logger="atomscale_bluesky.client")
    cam = MemoryCamera(name="cam")
    callback = AtomscaleCallback(client, compression_level=-3)
    RE.subscribe(callback)
    RE(count([cam], num=75))
    assert callback.flush(60)
    callback.close()
    (rheed,) = callback.summaries[0].rheed
    opened = [r.getMessage() for r in caplog.records if "opened RHEED stream" in r.getMessage()]
    assert len(opened) == 1 and opened[0].endswith("zstd level -3)")
    np.testing.assert_array_equal(
        server.reader.frames(rheed.data_id), np.stack([f for _, f in cam.image.produced])
    )


@pytest.mark.parametrize("level", [0, 99, "3"])
def test_a_level_zstd_does_not_have_is_refused_at_construction(client, level):
    with pytest.raises(ValueError, match="compression_level"):
        AtomscaleCallback(client, compression_level=level)
