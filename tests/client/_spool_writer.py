"""Child process for the crash test: opens a stream, pushes chunks forever, reports each one.

Usage: python _spool_writer.py ENDPOINT SPOOL_DIR (API key from ATOMSCALE_API_KEY). Prints the
data_id, then ``pushed <idx>`` after each push returned (so that chunk is on disk). The test
kills it with SIGKILL part-way.
"""

from __future__ import annotations

import sys

import numpy as np


def chunk_frames(idx: int) -> np.ndarray:
    """Deterministic frames of chunk ``idx`` (the test recomputes them)."""
    rng = np.random.default_rng(1000 + idx)
    frames = rng.integers(0, 40, (20, 24, 32), dtype=np.uint8)
    frames[:, 10:14, :] += 150
    return frames


def main() -> None:
    from atomscale_bluesky.client import AtomscaleClient

    endpoint, spool_dir = sys.argv[1], sys.argv[2]
    client = AtomscaleClient(
        endpoint=endpoint, spool_dir=spool_dir, spool_min_free_bytes=0, clock_sync=False
    )
    stream = client.open_rheed_stream(fps=10.0, stream_name="crash test")
    print(stream.data_id, flush=True)
    idx = 0
    while True:
        stream.push(chunk_frames(idx))
        print(f"pushed {idx}", flush=True)
        idx += 1


if __name__ == "__main__":
    main()
