"""Soak: a long monitored run through IOC -> RunEngine -> AtomscaleCallback -> local server.

120 fps 640x480 frames from the simulated camera IOC and 22 channels at 10 Hz (the 12 readbacks
of the simulated growth sensors IOC at 10 Hz, plus 10 soft ophyd signals updated at 10 Hz in this
process) for N minutes (default 10). The server runs in a child process so it does not share the
GIL. Reports frames lost (target 0) and end-to-end latency percentiles from each frame's hardware
timestamp to the server's storage of its chunk, as ratios to the target (p50 at most the chunk
length plus 0.5 s).

Memory (:mod:`benchmarks.soak_memory`) is sampled at 10 Hz: the RSS of this process (the
RunEngine and the callback) and of the server's, and glibc's heap here split into small blocks,
mmapped blocks (frame-sized buffers) and free bytes kept inside the heap (fragmentation). Each
camera's chunk in flight (2 s of raw frames plus their compressed copies, about 115 MB at 640x480
and 120 fps) fills and is released every chunk length, so the RSS swings by that much every 2 s;
a slower sampler sees that cycle at a drifting phase, as a false sawtooth minutes long. Growth
(target < 20 MB) is therefore measured on 10 s windows (five chunk cycles each): the median of
the windows' troughs over the run's last minute minus that over the first minute after a
one-minute warm-up (shorter runs compare a fifth of the run each), with the same for the peaks,
the troughs' trend (MB per minute) and the swing within a window. Every 2 s it also samples the
spool's size, the callback's queue, ophyd's dispatcher backlog (monitor updates the RunEngine has
not taken yet, each holding its frame: on an overloaded machine the peaks grow with it) and the
frames delivered; it logs every full (generation 2) garbage collection: when, how long, how many
objects it freed. Both series are written beside the run (``samples.tsv``, ``memory.tsv``).

Probes for what grows (:mod:`benchmarks.soak_gc`): ``--garbage S`` keeps S seconds of cyclic
garbage and reports it by type and by the code of its frames, per RHEED frame; ``--buffers MB``
lists who holds the large buffers whenever glibc's mmapped blocks exceed MB; ``--census S`` counts
live objects by type; ``--tracemalloc S`` diffs allocations by traceback (it slows a 120 fps run
until it falls behind: use it with small frames). The process tunes glibc's allocator as the CLI
and the profile do (:func:`atomscale_bluesky.allocator.tune_allocator`); ``--default-allocator``
leaves it as it is.

Not part of ``make bench`` by default: ``.venv/bin/python -m benchmarks soak --minutes 1``.
"""

from __future__ import annotations

import argparse
import collections
import ctypes
import ctypes.util
import functools
import gc
import os
import shutil
import tempfile
import threading
import time
import tracemalloc
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.soak_gc import FullCollections, GarbageProbe, holder_tally
from benchmarks.soak_memory import MemoryTrace, chunk_cycle, growth_figures

CAMERA_PREFIX = "SOAK:RHEED:"
SENSORS_PREFIX = "SOAK:GROWTH:"
SOFT_CHANNELS = 10


def rss_bytes(pid: int | str = "self") -> int:
    """Resident set size of a process (this one by default), 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]  # fmt: skip


@functools.cache
def _mallinfo2() -> Any:
    fn = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallinfo2
    fn.restype = _MallInfo2
    return fn


def heap_bytes() -> tuple[int, int, int]:
    """glibc's heap bytes: in use (small blocks plus mmapped ones), free inside the heap, and the
    mmapped part of those in use (blocks of 128 kB and more: frames, chunks); zeros without
    glibc's mallinfo2."""
    try:
        info = _mallinfo2()()
    except (OSError, AttributeError):
        return 0, 0, 0
    return int(info.uordblks + info.hblkhd), int(info.fordblks), int(info.hblkhd)


class Census:
    """Live Python objects counted by type after warm-up and every ``every_s`` seconds; writes the
    types whose counts grew since the first count to ``path`` (cheap next to tracemalloc, which
    slows a 120 fps run until it falls behind)."""

    def __init__(self, path: Path, every_s: float, top: int = 25) -> None:
        self.path, self.every_s, self.top = path, every_s, top
        self.base: collections.Counter[str] | None = None
        self.last_t = 0.0

    def maybe(self, t: float, warmup: float) -> None:
        if t < warmup or (self.base is not None and t - self.last_t < self.every_s):
            return
        counts = collections.Counter(
            f"{type(o).__module__}.{type(o).__qualname__}" for o in gc.get_objects()
        )
        self.last_t = t
        if self.base is None:
            self.base = counts
            return
        grown = sorted(((n - self.base[k], k, n) for k, n in counts.items()), reverse=True)
        with self.path.open("a") as fh:
            print(f"=== t={t:.0f}s {sum(counts.values())} objects", file=fh)
            for diff, kind, n in grown[: self.top]:
                print(f"{diff:+8d} {n:8d} {kind}", file=fh)


class TraceDiffs:
    """tracemalloc snapshots after warm-up and every ``every_s`` seconds, diffed against the first.

    Writes the top allocations that grew, by traceback, to ``path`` (what grows with the run).
    """

    def __init__(self, path: Path, every_s: float, frames: int = 8, top: int = 15) -> None:
        self.path, self.every_s, self.top = path, every_s, top
        self.base: Any = None
        self.last_t = 0.0
        tracemalloc.start(frames)

    def maybe(self, t: float, warmup: float) -> None:
        if t < warmup or (self.base is not None and t - self.last_t < self.every_s):
            return
        snap = tracemalloc.take_snapshot().filter_traces(
            [tracemalloc.Filter(False, tracemalloc.__file__)]
        )
        self.last_t = t
        if self.base is None:
            self.base = snap
            return
        stats = snap.compare_to(self.base, "traceback")
        traced, peak = tracemalloc.get_traced_memory()
        with self.path.open("a") as fh:
            print(f"=== t={t:.0f}s traced {traced / 1e6:.1f} MB (peak {peak / 1e6:.1f})", file=fh)
            for stat in stats[: self.top]:
                print(f"{stat.size_diff / 1e3:+.1f} kB {stat.count_diff:+d} blocks", file=fh)
                for line in stat.traceback.format()[-12:]:
                    print("   " + line, file=fh)


@dataclass
class Samples:
    """Over the run, every 2 s: spool size, the callback's queue, the monitor callbacks waiting in
    ophyd's dispatcher (the RunEngine's backlog: each camera update holds its frame) and the
    frames the RunEngine delivered so far (memory is traced apart, at 10 Hz)."""

    times: list[float] = field(default_factory=list)
    spool: list[int] = field(default_factory=list)
    queue: list[int] = field(default_factory=list)
    dispatch: list[int] = field(default_factory=list)
    delivered: list[int] = field(default_factory=list)


class SoftChannels:
    """``n`` soft ophyd signals ticking at ``rate_hz`` (a stand-in for more sensor PVs)."""

    def __init__(self, n: int, rate_hz: float) -> None:
        from ophyd import Signal

        self.name = "aux"
        self.signals = [Signal(name=f"aux_ch{i:02d}", value=0.0) for i in range(n)]
        self._period = 1.0 / rate_hz
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._tick, daemon=True, name="soak-aux")

    def _tick(self) -> None:
        k = 0
        while not self._stop.wait(self._period):
            k += 1
            now = time.time()
            for i, sig in enumerate(self.signals):
                sig.put(float(np.sin(k / 50.0 + i)), timestamp=now)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)


class Sensors:
    """The growth sensors plus the soft channels, as one object a plan can monitor."""

    def __init__(self, sensors: Any, soft: SoftChannels) -> None:
        self.name = sensors.name
        self._sensors = sensors
        self._soft = soft

    @property
    def monitored(self) -> list[Any]:
        return list(self._sensors.monitored) + list(self._soft.signals)


def dispatcher_backlog() -> int:
    """Monitor callbacks queued in ophyd's dispatcher threads, not yet run."""
    from ophyd import get_cl

    dispatcher = get_cl().get_dispatcher()
    if dispatcher is None:
        return 0
    return sum(t.queue.qsize() for t in dispatcher.threads.values() if t is not None)


def _percentiles(values: np.ndarray) -> dict[str, float]:
    if values.size == 0:
        return {}
    return {f"p{p}": float(np.percentile(values, p)) for p in (50, 90, 99)} | {
        "max": float(values.max())
    }


def _latencies(reader: Any, data_id: str) -> np.ndarray:
    """Per frame: server storage time of its chunk minus the frame's capture time (s)."""
    out = []
    for chunk in reader.chunk_times(data_id):
        n = int(chunk["n_frames"])
        start, end = chunk["start_unix_ms_utc"] / 1000.0, chunk["end_unix_ms_utc"] / 1000.0
        captured = start + (end - start) * np.arange(n) / max(n, 1)
        out.append(float(chunk["received_at"]) - captured)
    return np.concatenate(out) if out else np.zeros(0)


def memory_now(server_pid: int | None) -> dict[str, int]:
    """RSS here and in the server's process, glibc's heap here: small blocks in use (Python's
    larger objects, C libraries), mmapped blocks (frame-sized buffers: frames, chunks) and free
    bytes kept inside the heap (fragmentation)."""
    used, free, mapped = heap_bytes()
    return {"rss": rss_bytes(), "server_rss": rss_bytes(server_pid) if server_pid else 0,
            "heap_small": used - mapped, "heap_mapped": mapped, "heap_free": free}  # fmt: skip


def write_samples(samples: Samples, path: Path) -> None:
    """Every sample as a tab-separated row (s, bytes, counts) for plotting the run."""
    names = [f.name for f in fields(Samples)]
    with path.open("w") as fh:
        print("\t".join(names), file=fh)
        for row in zip(*(getattr(samples, n) for n in names), strict=False):
            print("\t".join(f"{v:.2f}" if isinstance(v, float) else str(v) for v in row), file=fh)


def run(
    minutes: float,
    fps: float,
    width: int,
    height: int,
    rate_hz: float,
    *,
    tune: bool = True,
    trace_every_s: float = 0.0,
    census_every_s: float = 0.0,
    garbage_s: float = 0.0,
    buffers_floor_mb: float = 0.0,
) -> dict[str, Any]:
    from atomscale_bluesky.allocator import tune_allocator
    from atomscale_bluesky.sim import epics_env

    tuned = tune_allocator() if tune else False
    if not tune:
        os.environ["ATOMSCALE_TUNE_MALLOC"] = "0"  # the server child process too

    epics_env.apply(epics_env.loopback_env())  # before any CA library creates its context
    os.environ.setdefault("OPHYD_CONTROL_LAYER", "pyepics")
    os.environ["NO_PROXY"] = "127.0.0.1,localhost"

    from bluesky import RunEngine
    from caproto.sync.client import read

    from atomscale_bluesky.callback import AtomscaleCallback
    from atomscale_bluesky.client import AtomscaleClient
    from atomscale_bluesky.devices import GrowthSensors, RheedCamera, connect_all
    from atomscale_bluesky.plans import monitor_growth
    from atomscale_bluesky.server.runner import running_server_process
    from atomscale_bluesky.sim.launch import running_ioc

    duration = minutes * 60.0
    warmup = min(60.0, duration / 5)
    tmp = Path(tempfile.mkdtemp(prefix="soak-"))
    ioc_args = ["--fps", str(fps), "--width", str(width), "--height", str(height),
                "--sensors-prefix", SENSORS_PREFIX, "--update-rate", str(rate_hz)]  # fmt: skip
    with (
        running_server_process(data_dir=tmp / "server") as server,
        running_ioc("growth_chamber", CAMERA_PREFIX, args=ioc_args),
    ):
        camera = RheedCamera(CAMERA_PREFIX, name="rheed")
        sensors = GrowthSensors(SENSORS_PREFIX, name="growth")
        connect_all(camera, sensors)
        soft = SoftChannels(SOFT_CHANNELS, rate_hz)
        soft.start()
        client = AtomscaleClient(
            server.api_key, server.url, spool_dir=tmp / "spool", clock_sync=False,
            spool_min_free_bytes=0,
        )  # fmt: skip
        callback = AtomscaleCallback(client, rotation_key="growth_rotation_rpm")
        RE = RunEngine({})
        RE.subscribe(callback)
        delivered = {"frames": 0}

        def count_frames(name: str, doc: dict[str, Any]) -> None:
            if "rheed_image" in doc["data"]:
                delivered["frames"] += 1

        RE.subscribe(count_frames, "event")
        samples = Samples()
        done = threading.Event()
        t0 = time.monotonic()

        trace = TraceDiffs(tmp / "tracemalloc.txt", trace_every_s) if trace_every_s else None
        census = Census(tmp / "census.txt", census_every_s) if census_every_s else None
        garbage = GarbageProbe(tmp / "garbage.txt", garbage_s) if garbage_s else None
        full = FullCollections(t0)
        full.install()

        def sample() -> None:
            while not done.wait(2.0):
                t = time.monotonic() - t0
                samples.times.append(t)
                if trace is not None:
                    trace.maybe(t, warmup)
                if census is not None:
                    census.maybe(t, warmup)
                if garbage is not None:
                    garbage.maybe(t, warmup, delivered["frames"])
                backlog = dispatcher_backlog()
                mapped = heap_bytes()[2] if buffers_floor_mb and backlog < 5 else 0
                if buffers_floor_mb and mapped > buffers_floor_mb * 1e6:
                    with (tmp / "buffers.txt").open("a") as fh:
                        print(f"=== t={t:.0f}s mapped {mapped / 1e6:.0f} MB", file=fh)
                        fh.write(holder_tally())
                samples.spool.append(int(client.status()["bytes"]))
                samples.queue.append(callback.counters.queue_bytes)
                samples.dispatch.append(backlog)
                samples.delivered.append(delivered["frames"])

        threading.Thread(target=sample, daemon=True, name="soak-sample").start()
        memory = MemoryTrace(lambda: memory_now(server.pid))
        memory.start(t0)
        counter = CAMERA_PREFIX + "cam1:ArrayCounter_RBV"
        before = int(read(counter, timeout=2, repeater=False).data[0])
        rss_start = rss_bytes()
        plan_t0 = time.monotonic()
        RE(monitor_growth(camera, Sensors(sensors, soft), duration, fps=fps,
                          md={"sample": "soak wafer"}))  # fmt: skip
        plan_wall = time.monotonic() - plan_t0
        sent = int(read(counter, timeout=2, repeater=False).data[0]) - before
        soft.stop()
        flush_t0 = time.monotonic()
        callback.flush(1800)
        drain_s = time.monotonic() - flush_t0
        done.set()
        memory.stop()
        full.remove()
        callback.close()
        client.close()
        (summary,) = callback.summaries
        ids = [r.data_id for r in summary.rheed if r.frame_shape == (height, width) and r.data_id]
        stored = sum(sum(c["n_frames"] for c in server.reader.chunk_times(i)) for i in ids)
        latency = np.concatenate([_latencies(server.reader, i) for i in ids] or [np.zeros(0)])
        channels = summary.timeseries.channels if summary.timeseries else {}
    write_samples(samples, tmp / "samples.tsv")
    memory.write(tmp / "memory.tsv")
    for stored_data in ("server", "spool"):  # GBs of frames; the reports beside them are kept
        shutil.rmtree(tmp / stored_data, ignore_errors=True)
    during_run = [r for t, r in zip(memory.times, memory.values["rss"], strict=False)
                  if t <= plan_wall]  # fmt: skip
    return {
        "minutes": minutes,
        "fps": fps,
        "frame": f"{width}x{height}",
        "plan_wall_s": plan_wall,
        "drain_after_run_s": drain_s,
        "frames_sent_ioc": sent,
        "frames_delivered_re": delivered["frames"],
        "frames_stored": stored,
        "frames_stale_pre_run": sum(r.stale for r in summary.rheed),  # the monitor's old value
        "frames_lost": delivered["frames"] - stored - sum(r.stale for r in summary.rheed),
        "frames_missing_from_camera_sequence": summary.missing,
        "achieved_fps": delivered["frames"] / plan_wall,
        "channels": len(channels),
        "chunk_s": max(((r.chunk_size or 0) / (r.fps or fps) for r in summary.rheed), default=0.0),
        "points": summary.points,
        "allocator_tuned": tuned,
        "rss_start_mb": rss_start / 1e6,
        **{
            k: v
            for name in memory.values
            for k, v in growth_figures(memory, name, warmup, plan_wall).items()
        },
        "rss_chunk_cycle_mb_10hz": chunk_cycle(memory, plan_wall / 2, 6.0),
        "rss_max_over_start_mb": (max(during_run or [rss_start]) - rss_start) / 1e6,
        "spool_peak_mb": max(samples.spool or [0]) / 1e6,
        "spool_end_mb": (samples.spool[-1] if samples.spool else 0) / 1e6,
        "queue_peak_mb": max(samples.queue or [0]) / 1e6,
        "queue_mb_every_10s": " ".join(f"{q / 1e6:.0f}" for q in samples.queue[::5]),
        "dispatcher_backlog_peak": max(samples.dispatch or [0]),
        "dispatcher_backlog_every_10s": " ".join(str(q) for q in samples.dispatch[::5]),
        "re_fps_every_10s": " ".join(f"{d / 10:.0f}" for d in np.diff(samples.delivered[::5])),
        "tracemalloc_report": str(tmp / "tracemalloc.txt") if trace else "",
        "census_report": str(tmp / "census.txt") if census else "",
        "garbage_report": str(tmp / "garbage.txt") if garbage else "",
        "samples": str(tmp / "samples.tsv"),
        "memory_trace": str(tmp / "memory.tsv"),
        "gc_collections_by_generation": " ".join(str(g["collections"]) for g in gc.get_stats()),
        "gc_collected_by_generation": " ".join(str(g["collected"]) for g in gc.get_stats()),
        "full_gc_count": len(full.times),
        "full_gc_at_s": " ".join(f"{t:.0f}" for t in full.times),
        "full_gc_freed": " ".join(str(n) for n in full.freed),
        "full_gc_pause_ms": " ".join(f"{s * 1e3:.0f}" for s in full.seconds),
        "latency_s": _percentiles(latency),
        "errors": summary.errors,
        "summary": summary.text(),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks soak", description=__doc__)
    parser.add_argument("--minutes", type=float, default=10.0, help="run length (default 10)")
    parser.add_argument("--fps", type=float, default=120.0)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--rate", type=float, default=10.0, help="sensor update rate, Hz")
    parser.add_argument(
        "--default-allocator", action="store_true", help="leave glibc's malloc untuned"
    )
    parser.add_argument(
        "--tracemalloc", type=float, default=0.0, metavar="SECONDS",
        help="trace Python allocations; diff a snapshot every SECONDS against the warm-up one",
    )  # fmt: skip
    parser.add_argument(
        "--census", type=float, default=0.0, metavar="SECONDS",
        help="count live Python objects by type every SECONDS; list the types that grew",
    )  # fmt: skip
    parser.add_argument(
        "--garbage", type=float, default=0.0, metavar="SECONDS",
        help="keep SECONDS of cyclic garbage after warm-up (gc.DEBUG_SAVEALL); report what it is",
    )  # fmt: skip
    parser.add_argument(
        "--buffers", type=float, default=0.0, metavar="MB",
        help="whenever glibc's mmapped blocks exceed MB, list who holds the large buffers",
    )  # fmt: skip
    args = parser.parse_args(argv)
    result = run(
        args.minutes, args.fps, args.width, args.height, args.rate,
        tune=not args.default_allocator, trace_every_s=args.tracemalloc,
        census_every_s=args.census, garbage_s=args.garbage, buffers_floor_mb=args.buffers,
    )  # fmt: skip
    print(result.pop("summary"))
    lat = result.pop("latency_s")
    for key, value in result.items():
        print(f"{key:38s} {value:.6g}" if isinstance(value, float) else f"{key:38s} {value}")
    print(
        "latency capture -> stored (s)          "
        + ", ".join(f"{k} {v:.2f}" for k, v in lat.items())
    )
    target_s = result["chunk_s"] + 0.5
    p50, p99 = lat.get("p50", float("inf")), lat.get("p99", float("inf"))
    print(
        f"latency vs target (chunk {result['chunk_s']:.2f} s + 0.5 s = {target_s:.2f} s): "
        f"p50 {p50 / target_s:.2f}x, p99 {p99 / target_s:.2f}x"
    )
    growth = result["rss_trough_growth_mb"]
    print(
        f"RSS growth after warm-up (troughs of 10 s windows, last minute vs first): "
        f"{growth:+.1f} MB ({growth / 20:.2f}x the 20 MB target), peaks "
        f"{result['rss_peak_growth_mb']:+.1f} MB, trend {result['rss_trough_trend_mb_per_min']:+.2f}"
        f" MB/min; chunks in flight swing it by {result['rss_swing_mb']:.0f} MB; server process "
        f"troughs {result['server_rss_trough_growth_mb']:+.1f} MB; RunEngine backlog (ophyd "
        f"dispatcher) at most {result['dispatcher_backlog_peak']} updates"
    )
    verdict = [
        ("frames lost = 0", result["frames_lost"] == 0),
        ("RSS growth after warm-up < 20 MB", growth < 20),
        (f"latency p50 <= chunk {result['chunk_s']:.2f} s + 0.5 s", p50 <= target_s),
    ]
    for what, ok in verdict:
        print(f"{'PASS' if ok else 'FAIL'}: {what}")
    return result | {"latency_s": lat}


if __name__ == "__main__":
    main()
