"""The ``compression_level`` trade-off: shard size and CPU per frame for each zstd level.

For RHEED frames (the simulator's 640x480 patterns with noise, and the 300x500 streaks of the
client benchmark) each level's chunk is encoded with the shard codec on one thread, several
times; the table gives the compressed size against the raw frames, the CPU milliseconds per
frame (this thread's CPU time, steady on a shared machine) and both as ratios to level 3, the
protocol's default, measured in the same run.

Run: ``.venv/bin/python -m benchmarks levels [--levels -5,-1,1,3,6,9] [--seconds S]``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

import numpy as np


def measure(frames: Sequence[np.ndarray], level: int, seconds: float) -> tuple[float, float]:
    """(shard bytes / raw bytes, CPU seconds per frame) of encoding ``frames`` at ``level``."""
    from atomscale_bluesky import shards

    size = sum(memoryview(p).nbytes for p in shards.encode_shard_parts(frames, level=level))
    threads, shards._THREADS = shards._THREADS, 1  # one core: CPU time, not parallel speed-up
    try:
        n, t0 = 0, time.thread_time()
        while n == 0 or time.thread_time() - t0 < seconds:
            shards.encode_shard_parts(frames, level=level)
            n += 1
        cpu = (time.thread_time() - t0) / (n * len(frames))
    finally:
        shards._THREADS = threads
    return size / sum(f.nbytes for f in frames), cpu


def main(argv: list[str] | None = None) -> int:
    from benchmarks.bench_callback import rheed_pool
    from benchmarks.bench_client import rheed_frames

    parser = argparse.ArgumentParser(prog="benchmarks levels", description=__doc__)
    parser.add_argument("--levels", default="-5,-1,1,3,6,9")
    parser.add_argument("--seconds", type=float, default=1.0, help="CPU seconds per measurement")
    args = parser.parse_args(argv)
    levels = sorted({int(v) for v in args.levels.split(",")} | {3})
    sets = {
        "640x480 simulator": rheed_pool(),
        "300x500 streaks": list(rheed_frames(32, 300, 500)),
    }
    for label, frames in sets.items():
        rows = {level: measure(frames, level, args.seconds) for level in levels}
        size3, cpu3 = rows[3]
        print(f"{label} frames ({len(frames)} per chunk):")
        print(f"  {'level':>5} {'size/raw':>9} {'CPU ms/frame':>13} {'size/level 3':>13} "
              f"{'CPU/level 3':>12}")  # fmt: skip
        for level, (size, cpu) in rows.items():
            print(
                f"  {level:>5} {size:>9.3f} {cpu * 1e3:>13.3f} {size / size3:>13.2f} "
                f"{cpu / cpu3:>12.2f}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
