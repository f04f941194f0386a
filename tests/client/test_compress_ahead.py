"""Frames compressed as they arrive (``RheedStream.compress_ahead``) are stored as pushed whole."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from atomscale_bluesky.client.errors import StreamClosedError
from atomscale_bluesky.client.frame_compressor import FrameCompressor
from atomscale_bluesky.shards import compress_frame, encode_shard

from .conftest import compress_threads, rheed_like


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


def test_streams_of_one_client_share_its_compression_threads(server: Any, make_client: Any) -> None:
    """Three cameras' frames fill the same groups: no more threads than one camera's, each
    stream stores its own frames, and a stream finalized early leaves the others compressing."""
    from atomscale_bluesky.client.frame_compressor import COMPRESS_THREADS

    client = make_client(server)
    before = compress_threads()
    streams = [client.open_rheed_stream(fps=10.0, chunk_size=20) for _ in range(3)]
    frames = [rheed_like(20, 60, 80, seed=s) for s in (1, 2, 3)]
    ahead: list[list[Any]] = [[], [], []]
    for i in range(10):  # interleaved, as cameras of one run arrive
        for s in range(3):
            ahead[s].append(streams[s].compress_ahead(frames[s][i]))
    streams[0].push(list(frames[0][:10]), compressed=ahead[0])
    assert streams[0].finalize().ok  # its frames' group also holds the others' frames
    for i in range(10, 20):
        for s in (1, 2):
            ahead[s].append(streams[s].compress_ahead(frames[s][i]))
    for s in (1, 2):
        streams[s].push(list(frames[s]), compressed=ahead[s])
        assert streams[s].finalize().ok
    assert 0 < len(compress_threads() - before) <= COMPRESS_THREADS
    assert np.array_equal(server.reader.frames(streams[0].data_id), frames[0][:10])
    for s in (1, 2):
        assert np.array_equal(server.reader.frames(streams[s].data_id), frames[s])
    client.close()


def test_a_level_per_compressor_and_frames_after_close_compressed_in_place() -> None:
    from atomscale_bluesky.client.frame_compressor import SharedCompressors

    shared = SharedCompressors()
    assert shared.get(3) is shared.get(3)
    assert shared.get(-5) is not shared.get(3)
    frame = rheed_like(1, 60, 80, seed=5)[0]
    first = shared.get(3)
    pending = first.submit(frame)
    shared.close()  # hands the filling group over; the threads finish it
    assert bytes(pending.result()) == compress_frame(frame, 3)
    late = first.submit(frame)
    first.flush()  # the pool is closed: compressed on this thread
    assert bytes(late.result()) == compress_frame(frame, 3)
