"""What a chunk's stay in the spool costs: written, synced, read for the upload and deleted.

The spool writes each chunk's payload and sidecar and renames them into place; with ``fsync`` (the
default) it also flushes both files and their folder to the disk before the chunk counts as
spooled, so a power cut cannot lose or corrupt it. A payload of 1 MB or more is written with
``O_DIRECT``, past the page cache, and the upload reads it from memory while the spool holds it.

This measures one chunk's life (``enqueue``, ``open_payload`` read in 1 MiB pieces as the upload
reads it, ``finish``) for a RHEED chunk (2 s of 640x480 frames at 120 fps, zstd-compressed RHEED
patterns, handed over as the callback hands it: the frames' zstd buffers and the index) and a
small time-series chunk, in four ways in the same run and on the same disk: buffered without
fsync, buffered with fsync, the default (``O_DIRECT`` with fsync, held in memory), and
``O_DIRECT`` with fsync read back from the file. It prints the CPU and the wall time per chunk of
each, and the default's CPU over the buffered write's.

Run: ``.venv/bin/python -m benchmarks spool [--chunks N] [--dir PATH]``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

#: (label, Spool options) of each way measured; the default is the spool's own.
WAYS: list[tuple[str, dict[str, Any]]] = [
    ("buffered, no fsync", {"fsync": False, "direct_io": False, "hold_bytes": 0}),
    ("buffered + fsync", {"fsync": True, "direct_io": False, "hold_bytes": 0}),
    ("O_DIRECT + fsync, held (default)", {}),
    ("O_DIRECT + fsync, read back", {"hold_bytes": 0}),
]


def _rheed_payload() -> list[Any]:
    """One RHEED chunk's shard parts: 240 frames of 640x480 (32 distinct simulated patterns)."""
    from atomscale_bluesky.shards import encode_shard_parts
    from benchmarks.bench_callback import rheed_pool

    pool = rheed_pool()
    return encode_shard_parts([pool[i % len(pool)] for i in range(240)])


def _timeseries_payload() -> bytes:
    rng = np.random.default_rng(0)
    return rng.bytes(6_000)  # about 100 points of 22 channels as JSON


def per_chunk(payload: Any, chunks: int, root: Path, **options: Any) -> tuple[list[float], float]:
    """Wall milliseconds of each chunk's life in a fresh spool under ``root``, and the mean CPU
    milliseconds (this thread) per chunk."""
    from atomscale_bluesky.client.spool import Spool

    spool = Spool(root, "http://127.0.0.1:9", min_free_bytes=0, **options)
    spool.open_stream("bench", "rheed", {}, data_id="bench")
    stop = threading.Event()
    times = []
    cpu = time.thread_time()
    try:
        for idx in range(chunks):
            t = time.perf_counter()
            reason = spool.enqueue("bench", idx, "rheed", {"dims": "1,1,1"}, payload)
            if reason is not None:
                raise RuntimeError(f"chunk {idx} dropped: {reason}")
            entry = spool.claim(stop, 1.0)
            assert entry is not None
            with spool.open_payload(entry) as body:
                while body.read(1 << 20):
                    pass
            spool.finish(entry, "uploaded")
            times.append((time.perf_counter() - t) * 1000.0)
    finally:
        spool.close()
    return times, (time.thread_time() - cpu) * 1000.0 / chunks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=20, help="chunks per measurement")
    parser.add_argument("--dir", help="where to put the spools (default: a temporary folder)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-spool-", dir=args.dir) as tmp:
        for label, payload in (("RHEED", _rheed_payload()), ("time series", _timeseries_payload())):
            size = len(payload) if isinstance(payload, bytes) else sum(len(p) for p in payload)
            print(f"{label} chunk of {size / 1e6:.2f} MB, per chunk:", flush=True)
            cpu_ms: dict[str, float] = {}
            for i, (way, options) in enumerate(WAYS):
                wall, cpu_ms[way] = per_chunk(
                    payload, args.chunks, Path(tmp) / f"{label}{i}", **options
                )
                print(
                    f"  {way:34s} CPU {cpu_ms[way]:6.1f} ms, wall median "
                    f"{statistics.median(wall):6.1f} ms (p90 {float(np.percentile(wall, 90)):.1f})",
                    flush=True,
                )
            default, buffered = cpu_ms[WAYS[2][0]], cpu_ms[WAYS[1][0]]
            print(
                f"  the default's CPU over the buffered write's (both with fsync): "
                f"{default / buffered:.2f}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
