"""What durability costs per chunk: writing a chunk to the spool with fsync on and off.

The spool writes each chunk's payload and sidecar and renames them into place; with ``fsync`` (the
default) it also flushes both files and their folder to the disk before the chunk counts as
spooled, so a power cut cannot lose or corrupt it. This measures ``Spool.enqueue`` per chunk for a
RHEED chunk (2 s of 640x480 frames at 120 fps, zstd-compressed RHEED patterns) and a small
time-series chunk, fsync off and on, in the same run and on the same disk, and prints the ratio.

Run: ``.venv/bin/python -m benchmarks spool [--chunks N] [--dir PATH]``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def _rheed_payload() -> bytes:
    """One RHEED chunk's shard: 240 frames of 640x480 (32 distinct simulated patterns)."""
    from atomscale_bluesky.shards import encode_shard
    from benchmarks.bench_callback import rheed_pool

    pool = rheed_pool()
    return encode_shard([pool[i % len(pool)] for i in range(240)])


def _timeseries_payload() -> bytes:
    rng = np.random.default_rng(0)
    return rng.bytes(6_000)  # about 100 points of 22 channels as JSON


def per_chunk_ms(payload: bytes, chunks: int, root: Path, *, fsync: bool) -> list[float]:
    """Milliseconds of each ``enqueue`` of ``payload`` into a fresh spool under ``root``."""
    from atomscale_bluesky.client.spool import Spool

    spool = Spool(root, "http://127.0.0.1:9", min_free_bytes=0, fsync=fsync)
    spool.open_stream("bench", "rheed", {}, data_id="bench")
    times = []
    try:
        for idx in range(chunks):
            t = time.perf_counter()
            reason = spool.enqueue("bench", idx, "rheed", {"dims": "1,1,1"}, payload)
            times.append((time.perf_counter() - t) * 1000.0)
            if reason is not None:
                raise RuntimeError(f"chunk {idx} dropped: {reason}")
    finally:
        spool.close()
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=20, help="chunks per measurement")
    parser.add_argument("--dir", help="where to put the spools (default: a temporary folder)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-spool-", dir=args.dir) as tmp:
        for label, payload in (("RHEED", _rheed_payload()), ("time series", _timeseries_payload())):
            off = per_chunk_ms(payload, args.chunks, Path(tmp) / f"{label}-off", fsync=False)
            on = per_chunk_ms(payload, args.chunks, Path(tmp) / f"{label}-on", fsync=True)
            off_ms, on_ms = statistics.median(off), statistics.median(on)
            print(
                f"{label} chunk of {len(payload) / 1e6:.2f} MB: enqueue median {off_ms:.1f} ms "
                f"without fsync, {on_ms:.1f} ms with -> fsync costs {on_ms - off_ms:.1f} ms per "
                f"chunk (ratio {on_ms / off_ms:.2f}; p90 with fsync "
                f"{float(np.percentile(on, 90)):.1f} ms)",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
