"""Live analysis: latency from frame capture to result available, and the server's CPU per frame.

Simulated RHEED frames (640x480, one monolayer per second) are "captured" in real time at
120 fps, cut into 2 s chunks and streamed by our client to a local server in a child process,
while a poller asks ``GET rheed/timeseries/{id}/?last_n=1`` every 10 ms. A frame's latency is
the time from its capture to the first poll that shows a result for it (or a later frame); the
chunk length bounds it from below. The analysis CPU per frame comes from the server's worker
thread (``/local/health``); the baseline, measured in this run, is zstd decoding of the same
chunk (what the server does once to verify every shard; the analysis reuses those frames).

Catch-up: a long 300x500 stream (30 fps declared, 60-frame chunks) handed to the analysis worker
as fast as it takes it (a client catching up after an outage, a replay), with the run's tool-state
stream (a shutter and five other channels at 10 Hz) stored alongside. Two cases: growth (shutter
open, 1 s oscillations: the window holds 8 periods) and idle (shutter closed, no oscillation: the
window grows to ``max_window_s``). It prints the worker's CPU per frame over the first and the
last fifth of the stream, over the zstd decode of the same frames (baseline).
Run: ``.venv/bin/python -m benchmarks analysis [--seconds 20] [--fps 120] [--catch-up-frames N]``.

Before/after the O(N log N) period scan, the incremental shutter reads, the prefix-integral
monolayer count and the cached rotating-stream medians (2-core machine shared with other
benchmarks; same-run baselines; load average 4.7 before, 5.9 after):

=============================================  ==============  ==============
analysis CPU per frame / zstd decode           before          after
=============================================  ==============  ==============
live, 640x480 at 120 fps, 2 s chunks           0.34x           0.11x
catch-up growth, first -> last fifth           0.47x -> 1.36x  0.16x -> 0.13x
catch-up idle (120 s window), first -> last    5.63x -> 11.9x  0.21x -> 0.25x
=============================================  ==============  ==============

Live chunk stored -> result p50: 57 ms before, 26 ms after. ``estimate_period`` on a 120 s window
(thread CPU): about 160 ms before, 2.3 ms after. ``python -m benchmarks client --skip-official
--frames-small 10000 --frames-large 0`` (load 1.4-8.6), server CPU per frame over zstd's
(``srv/zstd``): 1.54-1.98 before (median 1.71, 11 runs), 0.69-0.97 after (median 0.86, 11
runs). Client throughput over the zstd ceiling (``ours/zstd``) ranged 0.24-0.69 before and
0.33-0.98 after (medians 0.46 and 0.44): the other load dominated it, so these runs say nothing
about throughput.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import zstandard


def frame_bank(fps: float, seconds: float, height: int, width: int) -> np.ndarray:
    """``seconds`` of growth frames (a whole number of 1 s oscillations, so the bank loops)."""
    from atomscale_bluesky.sim.growth import GrowthModel, GrowthParams
    from atomscale_bluesky.sim.pattern import FrameInputs, PatternConfig, RheedPattern

    pattern = RheedPattern(PatternConfig(width=width, height=height, seed=3))
    model = GrowthModel(GrowthParams(monolayer_period_s=1.0, damping_s=1e5), t0=0.0)
    model.set_shutter(True, 0.0)
    frames = []
    for i in range(int(fps * seconds)):
        state = model.advance(i / fps)
        frames.append(pattern.render(FrameInputs(state.specular, 0.0, state.roughness)))
    return np.stack(frames)


def decode_baseline(chunk: np.ndarray, repeats: int = 3) -> float:
    """CPU seconds per frame to zstd-decode the chunk's frames (level 3, one frame at a time)."""
    comp, dec = zstandard.ZstdCompressor(level=3), zstandard.ZstdDecompressor()
    blobs = [comp.compress(f.tobytes()) for f in chunk]
    size = chunk[0].size
    start = time.thread_time()
    for _ in range(repeats):
        for blob in blobs:
            dec.decompress(blob, max_output_size=size)
    return (time.thread_time() - start) / (repeats * len(chunk))


class Poller(threading.Thread):
    """Polls the latest result; records (wall time, newest frame number) when it changes."""

    def __init__(self, url: str, key: str, data_id: str) -> None:
        super().__init__(daemon=True)
        self.url = f"{url}/rheed/timeseries/{data_id}/"
        self.headers = {"X-API-KEY": key}
        self.seen: list[tuple[float, int]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        with httpx.Client(timeout=10) as http:
            last = -1
            while not self.stop.is_set():
                response = http.get(self.url, params={"last_n": 1}, headers=self.headers)
                if response.status_code == 200:
                    frame = response.json()["series_by_angle"][0]["series"][-1]["frame_number"]
                    if frame > last:
                        self.seen.append((time.time(), frame))
                        last = frame
                self.stop.wait(0.01)


def catch_up(
    bank: np.ndarray, n_frames: int, shutter_open: bool, shuffle: bool, fps: float = 30.0
) -> list[float]:
    """The analysis worker's CPU seconds after each chunk it analysed: ``bank`` looped, its
    frames in a new random order every chunk with ``shuffle`` (so the loop is no oscillation)."""
    from atomscale_bluesky.server.analysis.worker import AnalysisWorker, ChunkNotice
    from atomscale_bluesky.server.storage import Storage

    chunk = len(bank)
    cpu: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        storage = Storage(Path(tmp) / "data")
        worker = AnalysisWorker(storage)
        worker.start()
        try:
            rheed = storage.create_rheed_stream("bench (camera)", fps, 0.0, None, None, None)
            sensors, _ = storage.create_timeseries_stream("bench (sensors)", None, 10, None)
            rng = np.random.default_rng(1)
            for k in range(n_frames // chunk):
                t0 = 1.7e9 + k * chunk / fps
                times = (t0 + np.arange(0.0, chunk / fps, 0.1)).tolist()
                channels = {"ga_shutter": (times, [float(shutter_open)] * len(times), None)}
                for j in range(5):
                    channels[f"sensor{j}"] = (times, rng.normal(size=len(times)).tolist(), "V")
                storage.store_points(sensors, k, channels)
                frames = bank[rng.permutation(chunk)] if shuffle else bank
                worker.submit(ChunkNotice(rheed, k, chunk, int(t0 * 1000), fps, frames))
                while worker.chunks_analysed <= k:
                    time.sleep(0.0005)
                cpu.append(worker.cpu_s)
        finally:
            worker.stop()
            storage.close()
    return cpu


def print_catch_up(n_frames: int) -> None:
    fps = 30.0
    growth = frame_bank(fps, 2.0, 300, 500)  # 60 frames: two whole 1 s oscillations
    rng = np.random.default_rng(2)
    idle = np.clip(growth.mean(axis=0) + rng.normal(0, 4, growth.shape), 0, 255).astype(np.uint8)
    baseline = decode_baseline(growth)
    print(
        f"catch-up: {n_frames} frames 300x500, {fps:g} fps declared, 60-frame chunks; "
        f"analysis CPU per frame / zstd decode ({baseline * 1e6:.1f} us per frame, baseline)"
    )
    for name, bank, growing in (("growth", growth, True), ("idle", idle, False)):
        cpu = catch_up(bank, n_frames, shutter_open=growing, shuffle=not growing, fps=fps)
        fifth = max(1, len(cpu) // 5)
        first = cpu[fifth - 1] / (fifth * len(bank))
        last = (cpu[-1] - cpu[-fifth - 1]) / (fifth * len(bank))
        print(
            f"  {name:>6}: first fifth {first / baseline:.3f}x, last fifth {last / baseline:.3f}x "
            f"({first * 1e6:.0f} -> {last * 1e6:.0f} us per frame)"
        )


def live(fps: float, seconds: float) -> None:
    """Stream in real time through a server process; print latency and analysis CPU."""
    from atomscale_bluesky.client import AtomscaleClient
    from atomscale_bluesky.server.runner import running_server_process

    chunk_s = 2.0
    chunk = int(fps * chunk_s)
    bank = frame_bank(fps, chunk_s, 480, 640)
    baseline = decode_baseline(bank)
    n_chunks = max(2, int(seconds / chunk_s))
    captured: list[float] = []
    with (
        tempfile.TemporaryDirectory() as tmp,
        running_server_process(Path(tmp) / "data") as srv,
        AtomscaleClient(srv.api_key, srv.url, spool_dir=Path(tmp) / "spool") as client,
    ):
        if True:  # one block: the server, the client and the poller live as long as the stream
            stream = client.open_rheed_stream(fps=fps, chunk_size=chunk)
            health0 = srv.reader.health()["analysis"]
            poller = Poller(srv.url, srv.api_key, str(stream.data_id))
            poller.start()
            t0 = time.time() + 0.1
            for k in range(n_chunks):
                times = t0 + (k * chunk + np.arange(chunk)) / fps
                delay = times[-1] - time.time()  # the chunk is complete once its last frame is
                if delay > 0:
                    time.sleep(delay)
                stream.push(bank, int(round(times[0] * 1000)))
                captured.extend(times.tolist())
            assert stream.finalize().ok
            total = n_chunks * chunk
            deadline = time.monotonic() + 60
            while (not poller.seen or poller.seen[-1][1] < total - 1) and (
                time.monotonic() < deadline
            ):
                time.sleep(0.05)
            poller.stop.set()
            poller.join()
            health = srv.reader.health()["analysis"]
            stored = [c["received_at"] for c in srv.reader.chunk_times(str(stream.data_id))]
    seen = poller.seen
    latencies = []
    j = 0
    for i, t_capture in enumerate(captured):
        while j < len(seen) and seen[j][1] < i:
            j += 1
        if j < len(seen):
            latencies.append(seen[j][0] - t_capture)
    lat = np.array(latencies)
    cpu = (health["cpu_s"] - health0["cpu_s"]) / max(1, len(captured))
    in_server = []  # chunk stored -> its last frame's result visible
    for k, received in enumerate(stored):
        last = (k + 1) * chunk - 1
        shown = next((t for t, f in seen if f >= last), None)
        if shown is not None:
            in_server.append(shown - received)
    print(f"{len(captured)} frames 640x480 at {fps:g} fps in {chunk}-frame (2 s) chunks")
    print(
        f"capture -> result latency: p50 {np.percentile(lat, 50) * 1000:.0f} ms, "
        f"p99 {np.percentile(lat, 99) * 1000:.0f} ms "
        f"(last frame of a chunk: p50 {np.percentile(lat[chunk - 1 :: chunk], 50) * 1000:.0f} ms)"
    )
    print(
        f"chunk stored -> its result available (in the server): p50 "
        f"{np.percentile(in_server, 50) * 1000:.0f} ms, max {max(in_server) * 1000:.0f} ms"
    )
    print(
        f"analysis CPU per frame: {cpu * 1e6:.1f} us = {cpu / baseline:.2f}x the zstd decode of "
        f"the same frame ({baseline * 1e6:.1f} us, baseline)"
    )
    print(f"analysis CPU at {fps:g} fps: {cpu * fps * 100:.1f} % of one core")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks analysis")
    parser.add_argument("--seconds", type=float, default=20.0, help="streaming time (0: skip)")
    parser.add_argument("--fps", type=float, default=120.0)
    parser.add_argument("--catch-up-frames", type=int, default=10000, help="0: skip catch-up")
    args = parser.parse_args(argv)
    if args.seconds > 0:
        live(args.fps, args.seconds)
    if args.catch_up_frames > 0:
        print_catch_up(args.catch_up_frames)


if __name__ == "__main__":
    main()
