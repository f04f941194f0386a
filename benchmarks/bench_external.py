"""What reading frames from files through the handler registry costs, against plain h5py.

A step scan with areaDetector's HDF5 plugin gives one datum per frame. The callback reads each
through the registry's ``AD_HDF5`` handler (datum -> rows of ``/entry/data/data``, plus the
frame's NDAttributes times and unique id). The baseline reads the same rows with h5py from an
open file, nothing else. Both in the same run, on the same file; the ratio is printed.

Run: ``.venv/bin/python -m benchmarks external [--frames N]``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

H, W = 480, 640
_ATTRS = "/entry/instrument/NDAttributes/"


def write_file(path: Path, n: int) -> None:
    """An areaDetector-like HDF5 file: n frames, EPICS times and unique ids per frame."""
    import h5py

    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        f.create_dataset(
            "/entry/data/data", data=rng.integers(0, 256, (n, H, W), np.uint8), chunks=(1, H, W)
        )
        f.create_dataset(_ATTRS + "NDArrayEpicsTSSec", data=np.arange(n) + 1_000_000_000)
        f.create_dataset(_ATTRS + "NDArrayEpicsTSnSec", data=np.zeros(n, np.int64))
        f.create_dataset(_ATTRS + "NDArrayUniqueId", data=np.arange(1, n + 1))


def through_registry_ms(path: Path, n: int) -> list[float]:
    """Milliseconds per frame read as the callback does: a datum per frame, times and ids too."""
    import event_model

    from atomscale_bluesky.callback.external_files import ExternalStore

    run = event_model.compose_run()
    res = run.compose_resource(
        spec="AD_HDF5",
        root=str(path.parent),
        resource_path=path.name,
        resource_kwargs={"frame_per_point": 1},
    )
    store = ExternalStore()
    store.add_resource(res.resource_doc)
    datums = [res.compose_datum(datum_kwargs={"point_number": i}) for i in range(n)]
    for datum in datums:
        store.add_datum(datum)
    times = []
    try:
        for datum in datums:
            t = time.perf_counter()
            got = store.read_datum(datum["datum_id"])
            times.append((time.perf_counter() - t) * 1000.0)
            assert got.frames.shape == (1, H, W) and got.timestamps and got.unique_ids
    finally:
        store.close()
    return times


def plain_h5py_ms(path: Path, n: int) -> list[float]:
    import h5py

    times = []
    with h5py.File(path, "r") as f:
        data = f["/entry/data/data"]
        for i in range(n):
            t = time.perf_counter()
            frames = np.asarray(data[i : i + 1])
            times.append((time.perf_counter() - t) * 1000.0)
            assert frames.shape == (1, H, W)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=300, help="frames in the file")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "frames.h5"
        write_file(path, args.frames)
        plain_h5py_ms(path, args.frames)  # warm the page cache for both
        base = statistics.median(plain_h5py_ms(path, args.frames))
        ours = statistics.median(through_registry_ms(path, args.frames))
    print(f"{H}x{W} uint8 frames, {args.frames} datums, median ms per frame:")
    print(f"  plain h5py slice (baseline):           {base:.3f}")
    print(f"  AD_HDF5 handler with times and ids:    {ours:.3f}  ({ours / base:.2f}x baseline)")
    return 0
