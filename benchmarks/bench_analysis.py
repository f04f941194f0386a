"""Live analysis: latency from frame capture to result available, and the server's CPU per frame.

Simulated RHEED frames (640x480, one monolayer per second) are "captured" in real time at
120 fps, cut into 2 s chunks and streamed by our client to a local server in a child process,
while a poller asks ``GET rheed/timeseries/{id}/?last_n=1`` every 10 ms. A frame's latency is
the time from its capture to the first poll that shows a result for it (or a later frame); the
chunk length bounds it from below. The analysis CPU per frame comes from the server's worker
thread (``/local/health``); the baseline, measured in this run, is zstd decoding of the same
chunk (what the server does once to verify every shard; the analysis reuses those frames).
Run: ``.venv/bin/python -m benchmarks analysis [--seconds 20] [--fps 120]``.
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


def main(argv: list[str] | None = None) -> None:
    from atomscale_bluesky.client import AtomscaleClient
    from atomscale_bluesky.server.runner import running_server_process

    parser = argparse.ArgumentParser(prog="python -m benchmarks analysis")
    parser.add_argument("--seconds", type=float, default=20.0, help="streaming time")
    parser.add_argument("--fps", type=float, default=120.0)
    args = parser.parse_args(argv)
    fps, chunk_s = args.fps, 2.0
    chunk = int(fps * chunk_s)
    bank = frame_bank(fps, chunk_s, 480, 640)
    baseline = decode_baseline(bank)
    n_chunks = max(2, int(args.seconds / chunk_s))
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


if __name__ == "__main__":
    main()
