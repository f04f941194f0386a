"""Local server CPU per frame while it receives shards, over zstd's compression CPU per frame.

The same RHEED-like frames are compressed once with zstd level 3 on one core (the baseline: the
client's unavoidable work per frame), then encoded as shards and pushed to a local server in a
child process by a few threads speaking the protocol (presign, then PUT), as a client's uploader
does. The server process's CPU seconds (all its threads, from /proc) per frame are divided by
zstd's; the server is measured with its live analysis on (the default) and off, so the storage
path and the analysis show separately. Every frame is read back and compared after the
measurement. Run: ``.venv/bin/python -m benchmarks server [--frames-small N] [--frames-large N]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import zstandard

from atomscale_bluesky.shards import encode_shard, shard_key
from benchmarks.bench_client import rheed_frames

UPLOADERS = 4  # concurrent PUTs, like a client's uploader pool


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) of a process, its threads included (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def zstd_cpu_per_frame(frames: np.ndarray) -> float:
    """CPU seconds per frame of zstd level 3 on one core, one frame at a time."""
    comp = zstandard.ZstdCompressor(level=3, write_checksum=False)
    cpu = time.thread_time()
    for frame in frames:
        comp.compress(frame.data)
    return (time.thread_time() - cpu) / len(frames)


@dataclass
class Upload:
    """What one stream's upload cost the server."""

    rate: float  # frames/s from the first presign to the last PUT's answer
    server_cpu_per_frame: float  # server CPU s per frame, queued analysis included


def _settle(pid: int, quiet_s: float = 0.3, bound_s: float = 30.0) -> None:
    """Wait until the server process stops using CPU (its analysis queue drained), bounded."""
    deadline = time.monotonic() + bound_s
    last = cpu_s(pid)
    while time.monotonic() < deadline:
        time.sleep(quiet_s)
        now = cpu_s(pid)
        if now - last < 0.02:
            return
        last = now


def upload(url: str, key: str, shards: Sequence[bytes], dims: tuple[int, int, int], pid: int
           ) -> tuple[str, Upload]:  # fmt: skip
    """Create a stream, PUT every shard from ``UPLOADERS`` threads, end it; measure the server."""
    n, h, w = dims
    auth = {"x-api-key": key}
    with httpx.Client(base_url=url, timeout=60.0) as http:
        body = {"data_item_name": "bench", "rotational_period": None, "rotations_per_min": 0.0,
                "fps_capture_rate": 30.0}  # fmt: skip
        data_id = http.post("/rheed/stream/", json=body, headers=auth).raise_for_status().json()
    todo = list(enumerate(shards))
    lock = threading.Lock()

    def worker() -> None:
        with httpx.Client(base_url=url, timeout=60.0) as http:
            while True:
                with lock:
                    if not todo:
                        return
                    k, shard = todo.pop(0)
                meta = {"data_id": data_id, "data_stream": "rheed", "is_stream": "1",
                        "is_rotating": "0", "raw_frame_rate": "30.0", "avg_frame_rate": "30.0",
                        "chunk_size": str(n), "dims": f"{n},{h},{w}",
                        "start_unix_ms_utc": str(1_700_000_000_000 + k * 2000),
                        "end_unix_ms_utc": str(1_700_000_000_000 + k * 2000 + 1999)}  # fmt: skip
                params = {"original_filename": shard_key(k), "num_parts": "1",
                          "staging_type": "stream"}  # fmt: skip
                r = http.post("/data_entries/raw_data/staged/upload_urls/", params=params,
                              json=meta, headers=auth).raise_for_status()  # fmt: skip
                put = http.put(r.json()["url"], content=shard, headers={"content-type": ""})
                put.raise_for_status()

    _settle(pid)
    cpu, t0 = cpu_s(pid), time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(UPLOADERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    _settle(pid)
    frames = n * len(shards)
    return data_id, Upload(frames / elapsed, (cpu_s(pid) - cpu) / frames)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_server", description=__doc__)
    parser.add_argument("--frames-small", type=int, default=1200, help="300x500 frames")
    parser.add_argument("--frames-large", type=int, default=240, help="1024x1024 frames")
    parser.add_argument("--analysis", choices=("on", "off", "both"), default="both")
    args = parser.parse_args([] if argv is None else argv)
    os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
    from atomscale_bluesky.server.runner import running_server_process

    cases = [("300x500", args.frames_small, 300, 500, 60), ("1024x1024", args.frames_large, 1024,
             1024, 20)]  # fmt: skip
    print(f"{'frames':>10} {'n':>5} {'analysis':>8} {'zstd ms':>8} {'srv ms':>8} "
          f"{'srv/zstd':>9} {'frames/s':>9}   (CPU ms per frame)")  # fmt: skip
    for analysis in {"on": (True,), "off": (False,), "both": (True, False)}[args.analysis]:
        extra = () if analysis else ("--no-analysis",)
        with (
            tempfile.TemporaryDirectory(prefix="bench-server-") as tmp,
            running_server_process(data_dir=Path(tmp) / "server", extra_args=extra) as server,
        ):
            assert server.pid is not None
            for _, _, h, w, chunk in cases:  # first requests import and compile: not measured
                warm = encode_shard(rheed_frames(chunk, h, w, seed=1))
                upload(server.url, server.api_key, [warm], (chunk, h, w), server.pid)
            for label, n, h, w, chunk in cases:
                if n <= 0:
                    continue
                frames = rheed_frames(n - n % chunk, h, w)
                zstd_cpu = zstd_cpu_per_frame(frames)
                shards = [encode_shard(frames[k : k + chunk]) for k in range(0, len(frames), chunk)]
                data_id, up = upload(server.url, server.api_key, shards, (chunk, h, w), server.pid)
                back = server.reader.frames(data_id)
                if back.shape != frames.shape or not np.array_equal(back, frames):
                    raise SystemExit(f"{label}: frames read back differ from those uploaded")
                print(
                    f"{label:>10} {len(frames):>5} {'on' if analysis else 'off':>8} "
                    f"{zstd_cpu * 1e3:>8.3f} {up.server_cpu_per_frame * 1e3:>8.3f} "
                    f"{up.server_cpu_per_frame / zstd_cpu:>9.2f} {up.rate:>9.1f}",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
