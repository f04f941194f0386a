"""Frames compressed as they arrive (``RheedStream.compress_ahead``) are stored as pushed whole."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from atomscale_bluesky.client.errors import StreamClosedError
from atomscale_bluesky.client.frame_compressor import FrameCompressor
from atomscale_bluesky.shards import compress_frame, encode_shard

from .conftest import rheed_like


@pytest.mark.parametrize("level", [3, -5])
def test_frames_compressed_ahead_store_the_same_frames_and_bytes(
    server: Any, make_client: Any, level: int
) -> None:
    client = make_client(server)
    frames = rheed_like(24, 60, 80, seed=9)
    frames[4] = 0
    stream = client.open_rheed_stream(fps=10.0, chunk_size=24, compression_level=level)
    ahead = [stream.compress_ahead(f) for f in frames[1:]]
    stream.push(list(frames), compressed=[None, *ahead])  # the first frame compressed at push
    assert stream.status()["bytes_spooled"] == len(encode_shard(frames, level=level))
    assert stream.finalize().ok
    assert np.array_equal(server.reader.frames(stream.data_id), frames)
    with pytest.raises(StreamClosedError):
        stream.compress_ahead(frames[0])


def test_groups_give_each_frame_its_own_zstd_frame() -> None:
    frames = rheed_like(9, 60, 80, seed=2)
    frames[6] = 0
    compressor = FrameCompressor(3, threads=2, group_bytes=4 * frames[0].nbytes)
    handles = [compressor.submit(f) for f in frames]
    assert [h.dispatched for h in handles] == [True] * 8 + [False]  # the last group is filling
    with pytest.raises(RuntimeError, match="flush"):
        handles[-1].result()
    compressor.flush()
    assert [bytes(h.result()) for h in handles] == [compress_frame(f, 3) for f in frames]
    compressor.close()


EXIT_PUSH = """
import sys, threading
import numpy as np
from atomscale_bluesky.client import AtomscaleClient

url, key, spool = sys.argv[1:4]
frames = np.random.default_rng(4).integers(0, 256, size=(12, 60, 80), dtype=np.uint8)
client = AtomscaleClient(key, url, spool_dir=spool, clock_sync=False)
stream = client.open_rheed_stream(fps=5.0, chunk_size=12)
early = [stream.compress_ahead(f) for f in frames[:6]]  # the pool runs while the script does


def push_at_exit():
    # the interpreter stops thread pools before it waits for threads such as a run's worker
    threading.main_thread().join()
    late = [stream.compress_ahead(f) for f in frames[6:]]
    stream.push(list(frames), compressed=early + late)
    print("finalized", stream.finalize().ok, stream.data_id)
    client.close()


threading.Thread(target=push_at_exit).start()
"""


def test_frames_pushed_while_the_interpreter_exits_are_compressed_and_stored(
    server: Any, tmp_path: Any
) -> None:
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", EXIT_PUSH, server.url, server.api_key, str(tmp_path / "spool")],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert "Traceback" not in out.stderr, out.stderr
    _, ok, data_id = out.stdout.split()
    assert ok == "True"
    expected = np.random.default_rng(4).integers(0, 256, size=(12, 60, 80), dtype=np.uint8)
    assert np.array_equal(server.reader.frames(data_id), expected)
