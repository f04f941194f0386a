"""The zstd level of a RHEED stream: every level stores the same pixels; bad levels are refused."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from .conftest import rheed_like


def test_each_level_stores_the_same_pixels_in_its_own_size(server: Any, make_client: Any) -> None:
    client = make_client(server)
    frames = rheed_like(20, 60, 80, seed=4)
    frames[5] = 0
    uploaded = {}
    for level in (-5, 3, 19):
        stream = client.open_rheed_stream(fps=10.0, compression_level=level)
        assert stream.compression_level == level
        stream.push(frames)
        uploaded[level] = stream.status()["bytes_spooled"]
        assert stream.finalize().ok
        assert np.array_equal(server.reader.frames(stream.data_id), frames), level
    assert uploaded[-5] > 1.1 * uploaded[3] > 0  # a fast level trades size for CPU
    assert uploaded[19] != uploaded[3]


@pytest.mark.parametrize("level", [0, 23, -8, 2.5, True])
def test_a_level_zstd_does_not_have_is_refused_before_the_stream_opens(
    server: Any, make_client: Any, level: Any
) -> None:
    client = make_client(server)
    with pytest.raises(ValueError, match="compression_level"):
        client.open_rheed_stream(fps=10.0, compression_level=level)
    assert server.reader.streams() == []
