"""What the AtomscaleCallback costs a run, and the frame rate it streams end to end.

The detector is an in-memory 640x480 camera cycling 32 precomputed RHEED frames (the simulator's
pattern and noise) with a changing frame counter, so the baseline run is as fast as the RunEngine
allows; the server is a child process (it must not share our GIL), as the real service would be,
at nice 10 and kept off one core (``--leave-core``; ``--server-on-every-core`` drops that), as
the remote service would be off the acquisition computer's cores.

(a) The issue's number: RunEngine wall time of an unpaced ``count`` of 5000 frames with the
    callback subscribed, divided by the same run without it (the mean of a run before and one
    after, as the machine is shared). Target at most 1.05.
(b) The design point: the same 5000 events paced at a camera's 120 fps (``count(delay=1/120)``).
(c) Simulated camera IOC -> ophyd (pyepics, monitors) -> RunEngine -> callback -> local server for
    increasing frame rates: the highest rate where every in-run frame was stored and the camera's
    counter shows none missing, next to the highest rate the RunEngine alone delivers.
(d) Two cameras at 640x480 and the paced rate each plus 22 scalar channels in one ``count``:
    the same ratio (target at most 1.05) and every frame stored. The channels are one ophyd
    Device, as a beamline's sensors are; ``--channels-as-signals`` reads 22 separate signals,
    which the RunEngine handles one message each: its bare run then fills a core and falls
    below the pace on the 2-core machine, and the ratio measures contention for cores instead.
    A paced run whose bare RunEngine is on a core over 90% of the time is flagged as not paced.

(e) The callback fed the documents of one camera plus 2 or 22 channels directly, without a
    RunEngine: the delivering thread's CPU per event and the callback's CPU per frame by thread,
    the figure least disturbed by a busy machine.

For (a), (b) and (d) the same count also runs with a subscriber that only compresses each frame
on the callback's compressor and keeps nothing (``CompressOnly``): the ratio no streaming can go
below on this machine, printed next to the callback's (the runs go bare, callback, compression
only, bare).
For (a), (b) and (d) the callback's CPU per frame (this process's CPU seconds from the run's start
until every chunk was acknowledged, minus the run without the callback, over the frames) is
printed next to zstd's CPU per frame for the same frames at the same level, the physical floor,
with the overhead beyond compression (target at most 15%), and the CPU per frame split by thread
group (the RunEngine's thread, the callback's worker, the compression threads, the upload
workers, the rest of the process). The paced runs stamp frames with the
host's time, so they also print the capture-to-stored latency p50/p99 (target: p50 at most the
chunk length plus 0.5 s).

Zstd level 3 (the protocol's, byte-identical to the reference) of these frames runs at about
165 MB/s = 540 frames/s on one core of the 2-core test machine, while the unpaced RunEngine alone
reads about 650 frames/s (200 MB/s) and keeps one core busy. Compressing that stream needs about
1.2 more cores, and the local server decoding and storing it needs about 0.3 more, so on 2 cores
(a) cannot reach 1.05: the callback's own work on the RunEngine thread is routing and an enqueue
(its CPU time grows by well under 1 ms per event), and the rest of the ratio is the RunEngine
waiting for a core and for the GIL while the upload runs. (b), at 34 MB/s, leaves room for all of
it. The CPU seconds of the RunEngine thread, this process and the server are printed for both.
The process tunes glibc's malloc as the CLI and the profile do
(:func:`atomscale_bluesky.allocator.tune_allocator`; ``--default-allocator`` leaves it as it is),
so the figures are a session's.

Run: ``.venv/bin/python -m benchmarks callback`` or ``python -m benchmarks.bench_callback
[--events N] [--paced-fps F] [--rates 30,60,120,240] [--seconds S] [--skip-unpaced] [--skip-ioc]
[--skip-two] [--skip-documents] [--level L] [--channels-as-signals] [--default-allocator]``.
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from atomscale_bluesky.thread_priority import DEFAULT_THREAD_NICE

T0 = 1_700_000_000.0
SHAPE = (480, 640)


#: The local server's ``--nice`` in the RunEngine cases: it stands in for the remote service, so
#: on the shared cores the RunEngine comes first.
SERVER_NICE = 10

#: Above this share of the run on a core, a bare "paced" RunEngine never sleeps: it is CPU-bound.
PACED_BUSY = 0.9


def rheed_pool(shape: tuple[int, int] = SHAPE, n: int = 32) -> list[np.ndarray]:
    """Realistic RHEED frames (the simulator's pattern and noise), rendered once before timing."""
    from atomscale_bluesky.sim.pattern import FrameInputs, PatternConfig, RheedPattern

    pattern = RheedPattern(PatternConfig(width=shape[1], height=shape[0], seed=3))
    return [
        pattern.render(FrameInputs(0.5 + 0.4 * np.cos(i / 3), 4.0 * i, 0.2)).copy()
        for i in range(n)
    ]


def _memory_camera(
    pool: list[np.ndarray], fps: float, *, name: str = "cam", realtime: bool = False
) -> Any:
    """An in-memory 640x480 detector: cycles precomputed frames, a frame counter, fps config.

    Frames are stamped one period apart from a fixed epoch, or (``realtime``) with the host's
    time of the read, so capture-to-stored latency can be measured.
    """
    from ophyd import Component as Cpt
    from ophyd import Device, Signal

    shape = pool[0].shape

    class FrameSignal(Signal):
        """Each read is the next frame of the pool, stamped one frame period later."""

        def get(self, **kwargs: Any) -> Any:
            n = getattr(self, "_n", 0)
            self._n = n + 1
            stamp = time.time() if realtime else T0 + n / fps
            self._readback = pool[n % len(pool)]
            self._metadata["timestamp"] = stamp
            self.parent.array_counter.put(n + 1, timestamp=stamp)
            return self._readback

        def describe(self) -> dict[str, Any]:
            desc = super().describe()
            desc[self.name].update(dtype="array", shape=list(shape), dtype_numpy="|u1")
            return desc

    class Camera(Device):
        image = Cpt(FrameSignal, value=pool[0], kind="hinted")
        array_counter = Cpt(Signal, value=0, kind="normal")
        temperature = Cpt(Signal, value=600.0, kind="normal")
        acquire_period = Cpt(Signal, value=1.0 / fps, kind="config")

    return Camera(name=name)


def _channels(n: int, *, as_device: bool = True) -> list[Any]:
    """``n`` soft scalar channels (growth sensors), each read as a slow sine, host-stamped.

    ``as_device``: one ophyd Device with ``n`` components, as a beamline exposes its sensors
    (like ``GrowthSensors``); otherwise ``n`` separate signals, which the RunEngine triggers and
    reads one message at a time (about four times its per-event cost with 22).
    """
    from ophyd import Component as Cpt
    from ophyd import Device, Signal

    class Channel(Signal):
        def get(self, **kwargs: Any) -> Any:
            self._readback = float(np.sin(time.monotonic() / 5.0 + len(self.name)))
            self._metadata["timestamp"] = time.time()
            return self._readback

    if not as_device:
        return [Channel(name=f"sensor_ch{i:02d}", value=0.0, kind="hinted") for i in range(n)]
    components = {f"ch{i:02d}": Cpt(Channel, value=0.0, kind="hinted") for i in range(n)}
    return [type("Sensors", (Device,), components)(name="sensor")]


def zstd_cpu_per_frame(pool: list[np.ndarray], level: int = 3, seconds: float = 1.0) -> float:
    """CPU seconds (this thread) zstd needs per frame of ``pool`` at ``level``: the floor."""
    import zstandard

    comp = zstandard.ZstdCompressor(level=level, write_checksum=False)
    n, t0 = 0, time.thread_time()
    while time.thread_time() - t0 < seconds or n < len(pool):
        comp.compress(pool[n % len(pool)].data)
        n += 1
    return (time.thread_time() - t0) / n


class CompressOnly:
    """A RunEngine subscriber that only compresses each event's frames, on the compressor the
    callback uses, and keeps nothing: the floor of what streaming the frames costs a run."""

    def __init__(self, level: int) -> None:
        from atomscale_bluesky.client.frame_compressor import FrameCompressor

        self.compressor = FrameCompressor(level)

    def __call__(self, name: str, doc: dict[str, Any]) -> None:
        if name != "event":
            return
        for value in doc["data"].values():
            if isinstance(value, np.ndarray) and value.ndim == 2:
                self.compressor.submit(value)

    def finish(self) -> None:
        """Return once every frame handed over is compressed, the threads gone."""
        self.compressor.flush()
        self.compressor.close(wait=True)


def compressor_cpu_per_frame(pool: list[np.ndarray], frames: int, level: int, chunk: int) -> float:
    """CPU seconds per frame of the callback's compressor alone on ``frames`` frames of ``pool``,
    fed as the worker feeds it: a chunk's frames, then a wait for their results."""
    only = CompressOnly(level)
    compressor = only.compressor
    with ThreadCpu() as threads:
        handles = []
        for i in range(frames):
            handles.append(compressor.submit(pool[i % len(pool)]))
            if len(handles) == chunk or i == frames - 1:
                compressor.flush()
                for handle in handles:
                    handle.result()
                handles = []
        only.finish()
    return threads.by_group().get("compress", 0.0) / frames


def compression_rate(pool: list[np.ndarray], seconds: float = 2.0) -> float:
    """MB/s of zstd level 3 on one core for these frames (the worker's floor per frame)."""
    import zstandard

    comp = zstandard.ZstdCompressor(level=3, write_checksum=False)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        comp.compress(pool[n % len(pool)].data)
        n += 1
    return n * pool[0].nbytes / (time.perf_counter() - t0) / 1e6


def _cpu_s(pid: int | str = "self", tid: int | None = None) -> float:
    """CPU seconds (user + system) of a process, or of one of its threads (Linux /proc).

    This process's and its threads' come to the nanosecond (``CLOCK_PROCESS_CPUTIME_ID``, the
    scheduler's runtime in ``schedstat``): /proc's stat counts in 10 ms ticks, which a thread
    using a few ms a second (an upload worker) loses by rounding at every sample.
    """
    if pid == "self" and tid is None:
        return time.process_time()
    if tid is not None:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as fh:
                return int(fh.read().split()[0]) / 1e9
        except (OSError, IndexError, ValueError):
            return float("nan")
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _core_wait_s(tid: int | None) -> float:
    """Seconds a thread of this process was runnable but waiting for a core (Linux schedstat)."""
    try:
        with open(f"/proc/self/task/{tid}/schedstat") as fh:
            return int(fh.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return float("nan")


def _thread_id(name: str) -> int | None:
    found = [t.native_id for t in threading.enumerate() if t.name == name and t.is_alive()]
    return found[-1] if found else None  # the newest RunEngine's loop thread


#: Thread-name prefixes the callback's CPU is split by (the rest of this process is "other").
THREAD_GROUPS = {
    "bluesky-run-engine": "RunEngine",
    "atomscale-callback": "worker",
    "atomscale-compress": "compress",
    "atomscale-upload": "upload",
    "atomscale-finalize": "finalize",
    "bench-sampler": "sampler",  # the sampler itself: left out of the callback's CPU
}


class ThreadCpu:
    """CPU seconds per thread group of this process over a block, threads that ended included.

    Threads are sampled every ``interval`` s (a pool's threads may end before the block does);
    a thread's last sample counts, so at most ``interval`` of CPU per ended thread is missed. A
    thread first seen after the block began counts all its CPU (a pool's threads start with
    their first task, and do a tenth of a second's work before the next sample).
    Each sample reads a /proc file per thread, and every read hands the GIL over and takes it
    back: sampled every 0.1 s during a RunEngine run, that forced the RunEngine's thread off the
    GIL about 800 times a second. So the RunEngine cases sample once a second while the run
    goes (the runs without the callback too) and every 0.1 s after it (:meth:`quicken`), when
    the compression threads end.
    """

    def __init__(self, interval: float = 0.1) -> None:
        self.interval = interval
        self._seen: dict[int, tuple[str, float, float]] = {}  # tid -> (group, first, last)
        self._started = False  # threads first seen from now on count from 0 s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-sampler", daemon=True)

    def _sample(self) -> None:
        for thread in threading.enumerate():
            tid = thread.native_id
            if tid is None or not thread.is_alive():
                continue
            group = next(
                (g for prefix, g in THREAD_GROUPS.items() if thread.name.startswith(prefix)),
                "other",
            )
            cpu = _cpu_s("self", tid)
            if cpu != cpu:
                continue
            first = self._seen.get(tid, (group, 0.0 if self._started else cpu, cpu))[1]
            self._seen[tid] = (group, first, cpu)
        self._started = True

    def _run(self) -> None:
        while not self._stop.wait(self.interval):  # read anew: quicken() may change it
            self._sample()

    def __enter__(self) -> ThreadCpu:
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def quicken(self, interval: float = 0.1) -> None:
        """Sample every ``interval`` s from the next sample on."""
        self.interval = interval

    def by_group(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for group, first, last in self._seen.values():
            out[group] = out.get(group, 0.0) + last - first
        return out


class CpuMeter:
    """CPU seconds used during a block: this process, the RunEngine thread, the server process."""

    def __init__(self, server_pid: int | None) -> None:
        self.server_pid = server_pid
        self.used: dict[str, float] = {}

    def _now(self) -> dict[str, float]:
        re_tid = _thread_id("bluesky-run-engine")
        return {
            "process": _cpu_s(),
            "run_engine_thread": _cpu_s("self", re_tid) if re_tid else float("nan"),
            "run_engine_core_wait": _core_wait_s(re_tid),
            "server": _cpu_s(self.server_pid) if self.server_pid else float("nan"),
        }

    def __enter__(self) -> CpuMeter:
        self._start = self._now()
        return self

    def __exit__(self, *exc: object) -> None:
        end = self._now()
        self.used = {k: end[k] - self._start[k] for k in end}


@dataclass(frozen=True)
class Case:
    """One RunEngine ``count``: how many cameras and scalar channels, paced or not."""

    events: int
    paced_fps: float | None = None
    cameras: int = 1
    channels: int = 0
    channels_as_device: bool = True
    level: int = 3
    server_nice: int = SERVER_NICE
    server_analysis: bool = True
    server_leaves_core: bool = True
    thread_nice: int = DEFAULT_THREAD_NICE  # the callback's and client's

    @property
    def realtime(self) -> bool:
        """Paced runs stamp frames with the host's time, so latency can be measured."""
        return self.paced_fps is not None


def _latency(reader: Any, data_id: str) -> np.ndarray:
    """Per frame: the server's storage time of its chunk minus the frame's capture time (s)."""
    out = []
    for chunk in reader.chunk_times(data_id):
        n = int(chunk["n_frames"])
        start, end = chunk["start_unix_ms_utc"] / 1000.0, chunk["end_unix_ms_utc"] / 1000.0
        out.append(float(chunk["received_at"]) - (start + (end - start) * np.arange(n) / n))
    return np.concatenate(out) if out else np.zeros(0)


def overhead(case: Case, spool: str) -> dict[str, float]:
    """RunEngine wall time with / without the callback for one ``count`` of ``case.events``.

    Unpaced: as fast as the RunEngine reads (the issue's number); paced: ``count`` with
    ``delay=1/paced_fps`` so the detectors produce frames at a camera's rate. The callback's CPU
    is this process's CPU seconds from the run's start until every chunk was acknowledged, minus
    those of the run without it.
    """
    from bluesky import RunEngine
    from bluesky.plans import count

    from atomscale_bluesky.callback import AtomscaleCallback
    from atomscale_bluesky.client import AtomscaleClient
    from atomscale_bluesky.server.read_client import LocalServerClient
    from atomscale_bluesky.server.runner import running_server_process

    pool = rheed_pool()
    fps = case.paced_fps or 120.0
    paced: dict[str, Any] = {"delay": 1.0 / case.paced_fps} if case.paced_fps else {}

    def detectors() -> list[Any]:
        cams = [
            _memory_camera(pool, fps, name=f"cam{i + 1}" if case.cameras > 1 else "cam",
                           realtime=case.realtime)
            for i in range(case.cameras)
        ]  # fmt: skip
        return cams + _channels(case.channels, as_device=case.channels_as_device)

    # the server runs in a child process at a lower CPU priority and off one core, standing in
    # for the remote service: it must not share our GIL, and the RunEngine comes first on the
    # shared cores
    extra = (() if case.server_analysis else ("--no-analysis",)) + (
        ("--leave-core",) if case.server_leaves_core else ()
    )
    with running_server_process(
        data_dir=spool + "-server", nice=case.server_nice, extra_args=extra
    ) as server:
        RE = RunEngine({}, call_returns_result=False)
        RE(count(detectors(), num=50))  # warm up
        bare_runs = []

        def run_bare() -> CpuMeter:
            with CpuMeter(server.pid) as meter, ThreadCpu(interval=1.0):  # as the callback run
                t = time.perf_counter()
                RE(count(detectors(), num=case.events, **paced))
                bare_runs.append(time.perf_counter() - t)
            return meter

        # bare, with the callback, bare again: the machine is shared, so the two bare runs
        # bracket the callback run and their mean is the baseline
        cpu_bare = run_bare()
        with AtomscaleClient(
            api_key=server.api_key,
            endpoint=server.url,
            spool_dir=spool,
            thread_nice=case.thread_nice,
        ) as client:
            chosen = {} if case.level == 3 else {"compression_level": case.level}
            callback = AtomscaleCallback(client, thread_nice=case.thread_nice, **chosen)
            token = RE.subscribe(callback)
            with CpuMeter(server.pid) as cpu_all, ThreadCpu(interval=1.0) as threads:
                with CpuMeter(server.pid) as cpu_cb:
                    t = time.perf_counter()
                    RE(count(detectors(), num=case.events, **paced))
                    with_cb = time.perf_counter() - t
                threads.quicken()
                t = time.perf_counter()
                callback.flush(600)
                drain = time.perf_counter() - t
            RE.unsubscribe(token)
            callback.close()
            summary = callback.summaries[-1]
            with LocalServerClient(server.url, server.api_key) as reader:
                ids = [r.data_id or "" for r in summary.rheed]
                stored = sum(reader.rheed_stream(i)["n_frames"] for i in ids)
                latency = np.concatenate([_latency(reader, i) for i in ids])
        floor = CompressOnly(case.level)
        token = RE.subscribe(floor)
        t = time.perf_counter()
        RE(count(detectors(), num=case.events, **paced))
        floor_s = time.perf_counter() - t
        floor.finish()
        RE.unsubscribe(token)
        cpu_bare_2 = run_bare()
        bare = sum(bare_runs) / len(bare_runs)
    frames = case.events * case.cameras
    bare_cpu = (cpu_bare.used["process"] + cpu_bare_2.used["process"]) / 2
    pct = {f"latency_p{q}": float(np.percentile(latency, q)) for q in (50, 99)}
    return {
        "bare_s": bare,
        "bare_first_s": bare_runs[0],
        "bare_second_s": bare_runs[1],
        "callback_s": with_cb,
        "ratio": with_cb / bare,
        "floor_s": floor_s,
        "floor_ratio": floor_s / bare,
        "drain_s": drain,
        "frames": float(frames),
        "frames_stored": float(stored),
        "lost": float(summary.lost),
        "missing": float(summary.missing),
        "dropped": float(summary.dropped_overflow),
        "points": float(summary.points),
        "mb_per_s": frames * pool[0].nbytes / bare / 1e6,
        "callback_cpu_per_frame": (
            cpu_all.used["process"] - threads.by_group().get("sampler", 0.0) - bare_cpu
        )
        / frames,
        "zstd_cpu_per_frame": zstd_cpu_per_frame(pool, case.level),
        "chunk_s": max((r.chunk_size or 0) / (r.fps or fps) for r in summary.rheed),
        **(pct if case.realtime and latency.size else {}),
        **{f"cpu_bare_{k}": v for k, v in cpu_bare.used.items()},
        "cpu_bare_again_process": cpu_bare_2.used["process"],
        "cpu_all_process": cpu_all.used["process"],
        **{f"cpu_cb_{k}": v for k, v in cpu_cb.used.items()},
        **{f"threads_{k}": v / frames for k, v in threads.by_group().items()},
    }


def _print_overhead(label: str, case: Case, o: dict[str, float]) -> None:
    what = f"{case.cameras} camera(s) x {case.events} 640x480 frames"
    if case.channels:
        form = "one device" if case.channels_as_device else "separate signals"
        what += f" + {case.channels} channels ({form})"
    busy = o["cpu_bare_run_engine_thread"] / o["bare_first_s"]
    if case.paced_fps and busy > PACED_BUSY:
        print(
            f"  note: without the callback the RunEngine's thread is on a core {100 * busy:.0f}% "
            f"of the run ({case.events / o['bare_s']:.0f} events/s against a "
            f"{case.paced_fps:.0f} fps pace): this run is bound by the RunEngine's own CPU, not "
            f"paced, and anything else running takes time from it",
            flush=True,
        )
    print(
        f"{label}: {what}: {o['bare_s']:.2f} s without "
        f"(mean of {o['bare_first_s']:.2f} before and {o['bare_second_s']:.2f} after), "
        f"{o['callback_s']:.2f} s with the callback -> ratio {o['ratio']:.3f} (target <= 1.05); "
        f"{o['frames'] / o['bare_s']:.0f} frames/s = {o['mb_per_s']:.0f} MB/s offered; "
        f"drain after the run {o['drain_s']:.2f} s; server stored {o['frames_stored']:.0f} "
        f"of {o['frames']:.0f} frames, lost {o['lost']:.0f}, dropped {o['dropped']:.0f}, "
        f"missing {o['missing']:.0f}, points {o['points']:.0f}; local server at nice "
        f"{case.server_nice}{'' if case.server_analysis else ', its live analysis off'}"
        f"{', off one core' if case.server_leaves_core else ', on every core'}, "
        f"callback threads at nice {case.thread_nice}",
        flush=True,
    )
    print(
        f"    compression alone (a subscriber that only compresses each frame on the callback's "
        f"compressor): {o['floor_s']:.2f} s -> ratio {o['floor_ratio']:.3f}; the callback's "
        f"ratio over it {o['ratio'] / o['floor_ratio']:.3f}",
        flush=True,
    )
    cb, floor = o["callback_cpu_per_frame"], o["zstd_cpu_per_frame"]
    print(
        f"    callback CPU per frame {cb * 1e3:.2f} ms (run + drain, this process, minus the "
        f"run without it) vs zstd level {case.level} {floor * 1e3:.2f} ms for the same frames "
        f"-> {cb / floor:.2f}x, overhead beyond compression {100 * (cb / floor - 1):.0f}% "
        f"(target <= 15%)",
        flush=True,
    )
    groups = _thread_groups(o)
    print(
        f"    CPU ms per frame by thread, run + drain, with the callback (the RunEngine's and "
        f"'other' include the run's own work): {groups}",
        flush=True,
    )
    if "latency_p50" in o:
        print(
            f"    capture -> stored latency p50 {o['latency_p50']:.2f} s, p99 "
            f"{o['latency_p99']:.2f} s (chunk {o['chunk_s']:.2f} s: target p50 <= "
            f"{o['chunk_s'] + 0.5:.2f} s)",
            flush=True,
        )
    print(
        f"    CPU s during the run (without / with): RunEngine thread "
        f"{o['cpu_bare_run_engine_thread']:.1f} / {o['cpu_cb_run_engine_thread']:.1f}, "
        f"this process {o['cpu_bare_process']:.1f} / {o['cpu_cb_process']:.1f}, "
        f"server process {o['cpu_bare_server']:.1f} / {o['cpu_cb_server']:.1f}; the RunEngine "
        f"thread runnable but waiting for a core {o['cpu_bare_run_engine_core_wait']:.2f} / "
        f"{o['cpu_cb_run_engine_core_wait']:.2f} s "
        f"(2 cores = {2 * o['callback_s']:.1f} CPU s in the callback run's wall time); this "
        f"process's CPU s in the bare runs before / after {o['cpu_bare_process']:.2f} / "
        f"{o['cpu_bare_again_process']:.2f}, in the callback's run + drain "
        f"{o['cpu_all_process']:.2f}",
        flush=True,
    )


def _monitor_run(RE: Any, camera: Any, seconds: float, fps: float) -> Any:
    import bluesky.preprocessors as bpp

    from atomscale_bluesky.plans import start_acquisition, stop_acquisition, wait

    @bpp.monitor_during_decorator(camera.monitored)
    @bpp.run_decorator(md={"plan_name": "bench_monitor"})
    def inner() -> Any:
        def body() -> Any:
            yield from start_acquisition(camera, fps=fps)
            yield from wait(seconds)

        return (yield from bpp.finalize_wrapper(body(), stop_acquisition(camera)))

    events: list[dict[str, Any]] = []
    token = RE.subscribe(lambda name, doc: events.append(doc), "event")
    RE(inner())
    RE.unsubscribe(token)
    return events


def _published(events: list[dict[str, Any]], run_first_ts: float) -> tuple[int, int]:
    """(frames the IOC published after the first image event, image events delivered)."""
    ids = [
        (e["timestamps"]["rheed_unique_id"], e["data"]["rheed_unique_id"])
        for e in events
        if "rheed_unique_id" in e["data"]
    ]
    images = {e["timestamps"]["rheed_image"] for e in events if "rheed_image" in e["data"]}
    after = [uid for ts, uid in ids if ts >= run_first_ts]
    if not after:
        return 0, 0
    return max(after) - min(after) + 1, len({t for t in images if t >= run_first_ts})


def end_to_end(rates: list[float], seconds: float, size: tuple[int, int], spool: str) -> list[dict]:
    """Per rate: frames published / delivered without callback / stored with callback."""
    from bluesky import RunEngine
    from caproto.sync.client import write

    from atomscale_bluesky.callback import AtomscaleCallback
    from atomscale_bluesky.client import AtomscaleClient
    from atomscale_bluesky.devices import RheedCamera, connect_all
    from atomscale_bluesky.server.runner import running_server_process
    from atomscale_bluesky.sim.launch import running_ioc

    results = []
    with (
        running_ioc("rheed_camera", "RHEED:") as ioc,
        running_server_process(data_dir=spool + "-server") as server,
    ):
        for suffix, value in (("cam1:SizeX", size[1]), ("cam1:SizeY", size[0])):
            write(ioc.prefix + suffix, value, notify=True, repeater=False)
        camera = RheedCamera(ioc.prefix, name="rheed")
        connect_all(camera)
        RE = RunEngine({}, call_returns_result=False)
        _monitor_run(RE, camera, 1.0, 10.0)  # first acquisition applies the size
        for fps in rates:
            events = _monitor_run(RE, camera, seconds, fps)
            first = min(
                e["timestamps"]["rheed_image"] for e in events if "rheed_image" in e["data"]
            )
            published, delivered = _published(events, first + 0.5)
            with AtomscaleClient(
                api_key=server.api_key, endpoint=server.url, spool_dir=spool
            ) as client:
                callback = AtomscaleCallback(client)
                token = RE.subscribe(callback)
                events = _monitor_run(RE, camera, seconds, fps)
                RE.unsubscribe(token)
                callback.flush(600)
                callback.close()
            first = min(
                e["timestamps"]["rheed_image"] for e in events if "rheed_image" in e["data"]
            )
            published_cb, delivered_cb = _published(events, first + 0.5)
            summary = callback.summaries[-1]
            stored = sum(r.frames for r in summary.rheed)
            stale = sum(r.stale for r in summary.rheed)  # the monitor's pre-run value, left out
            images_all = len(
                {e["timestamps"]["rheed_image"] for e in events if "rheed_image" in e["data"]}
            )
            results.append(
                {
                    "fps": fps,
                    "published_no_cb": published,
                    "delivered_no_cb": delivered,
                    "published_cb": published_cb,
                    "delivered_cb": delivered_cb,
                    "stored_cb": stored,
                    "images_cb": images_all - stale,
                    "missing_cb": summary.missing,
                    "lost_cb": summary.lost + summary.dropped_overflow,
                }
            )
    return results


def documents_only(events: int, channels: int, spool: str, level: int = 3) -> dict[str, float]:
    """(e) The callback fed event documents directly (no RunEngine, no pacing): CPU per frame.

    The same 640x480 frames, one camera plus ``channels`` scalars, delivered from this thread as
    fast as the callback takes them; the delivering thread's CPU per event (what the RunEngine's
    thread pays), and this process's CPU per frame until every chunk was acknowledged, split by
    thread group, next to zstd's for the same frames (the mean of a measurement before the run
    and one after).
    """
    import event_model

    from atomscale_bluesky.callback import AtomscaleCallback
    from atomscale_bluesky.client import AtomscaleClient
    from atomscale_bluesky.server.runner import running_server_process

    pool = rheed_pool()
    run = event_model.compose_run()
    keys: dict[str, Any] = {
        "cam_image": {"source": "sim", "dtype": "array", "shape": list(SHAPE),
                      "dtype_numpy": "|u1", "object_name": "cam"},
        "cam_array_counter": {"source": "sim", "dtype": "integer", "shape": [],
                              "object_name": "cam"},
    }  # fmt: skip
    keys.update(
        {f"ch{c:02d}": {"source": "sim", "dtype": "number", "shape": []} for c in range(channels)}
    )
    period = {"source": "sim", "dtype": "number", "shape": []}
    config = {"data": {"cam_acquire_period": 1 / 120}, "timestamps": {"cam_acquire_period": T0},
              "data_keys": {"cam_acquire_period": period}}  # fmt: skip
    desc = run.compose_descriptor(
        name="primary", data_keys=keys, configuration={"cam": config},
        object_keys={"cam": ["cam_image", "cam_array_counter"]},
    )  # fmt: skip
    docs: list[tuple[str, Any]] = [("start", run.start_doc), ("descriptor", desc.descriptor_doc)]
    for i in range(events):
        ts = T0 + i / 120
        data: dict[str, Any] = {"cam_image": pool[i % len(pool)], "cam_array_counter": i + 1}
        data.update({f"ch{c:02d}": float(np.sin(i / 50 + c)) for c in range(channels)})
        stamps = dict.fromkeys(data, ts)
        docs.append(
            ("event", desc.compose_event(data=data, timestamps=stamps, seq_num=i + 1, time=ts))
        )
    zstd_before = zstd_cpu_per_frame(pool, level)  # and after: the machine's speed drifts
    with (
        running_server_process(data_dir=spool + "-server") as server,
        AtomscaleClient(api_key=server.api_key, endpoint=server.url, spool_dir=spool) as client,
    ):
        callback = AtomscaleCallback(client, **({} if level == 3 else {"compression_level": level}))
        process = _cpu_s()
        with ThreadCpu() as threads:
            delivering = time.thread_time()
            for name, doc in docs:
                callback(name, doc)
            delivering = time.thread_time() - delivering
            callback("stop", run.compose_stop())
            callback.flush(600)
        used = _cpu_s() - process - threads.by_group().get("sampler", 0.0)
        callback.close()
        summary = callback.summaries[-1]
    frames = summary.frames or events  # per frame stored: a dropped frame was never compressed
    chunk = max((r.chunk_size or 0) for r in summary.rheed) or 240
    return {
        "compressor_alone": compressor_cpu_per_frame(pool, events, level, chunk),
        "events": float(events),
        "stored": float(summary.frames),
        "lost": float(summary.lost),  # dropped_overflow included
        "delivering_us": delivering / events * 1e6,
        "cpu_per_frame": used / frames,
        "zstd_cpu_per_frame": (zstd_before + zstd_cpu_per_frame(pool, level)) / 2,
        **{f"threads_{k}": v / frames for k, v in threads.by_group().items()},
    }


def _thread_groups(o: dict[str, float]) -> str:
    """CPU ms per frame of each thread group (the sampler's own thread left out)."""
    return ", ".join(
        f"{k.removeprefix('threads_')} {v * 1e3:.2f}"
        for k, v in sorted(o.items())
        if k.startswith("threads_") and k != "threads_sampler"
    )


def _print_documents(channels: int, o: dict[str, float]) -> None:
    cpu, floor = o["cpu_per_frame"], o["zstd_cpu_per_frame"]
    groups = _thread_groups(o)
    print(
        f"(e) documents only, {o['events']:.0f} events (640x480 frame + {channels} channels), "
        f"no RunEngine: {o['stored']:.0f} frames stored, {o['lost']:.0f} lost; delivering thread "
        f"{o['delivering_us']:.0f} us per event; callback CPU per frame {cpu * 1e3:.2f} ms vs zstd "
        f"{floor * 1e3:.2f} ms -> {cpu / floor:.2f}x, overhead beyond compression "
        f"{100 * (cpu / floor - 1):.0f}% (target <= 15%); by thread (ms per frame): {groups}; "
        f"the compressor alone on the same frames {o['compressor_alone'] * 1e3:.2f} ms",
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks callback", description=__doc__)
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--rates", default="30,60,120,240")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--size", default="480x640", help="camera frame HxW for the IOC part")
    parser.add_argument("--paced-fps", type=float, default=120.0)
    parser.add_argument("--skip-ioc", action="store_true")
    parser.add_argument("--skip-unpaced", action="store_true")
    parser.add_argument("--skip-two", action="store_true", help="skip the two-camera case (d)")
    parser.add_argument("--skip-documents", action="store_true", help="skip case (e)")
    parser.add_argument("--level", type=int, default=3, help="the callback's compression_level")
    parser.add_argument(
        "--channels-as-signals", action="store_true",
        help="in (d), read the 22 channels as 22 separate signals instead of one device",
    )  # fmt: skip
    parser.add_argument(
        "--server-nice", type=int, default=SERVER_NICE,
        help="CPU priority the local server runs at in (a), (b), (d): 0 shares the cores equally",
    )  # fmt: skip
    parser.add_argument(
        "--thread-nice", type=int, default=DEFAULT_THREAD_NICE,
        help="the callback's and client's thread_nice in (a), (b), (d) (default: theirs, 0, "
        "level with the RunEngine's thread)",
    )  # fmt: skip
    parser.add_argument(
        "--no-server-analysis", action="store_true",
        help="run the local server without its live analysis in (a), (b), (d) (the real service "
        "analyses on its own machines)",
    )  # fmt: skip
    parser.add_argument(
        "--server-on-every-core", action="store_true",
        help="let the local server run on every core in (a), (b), (d) (default: it keeps off one, "
        "as a remote service would be off the acquisition computer's cores)",
    )  # fmt: skip
    parser.add_argument(
        "--default-allocator", action="store_true",
        help="leave glibc's malloc as it is (default: tuned as the CLI and the profile tune it)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if not args.default_allocator:
        from atomscale_bluesky.allocator import tune_allocator

        print(f"glibc malloc tuned as the CLI and the profile tune it: {tune_allocator()}")
    setup: dict[str, Any] = {
        "server_nice": args.server_nice, "server_analysis": not args.no_server_analysis,
        "thread_nice": args.thread_nice, "server_leaves_core": not args.server_on_every_core,
    }  # fmt: skip
    logging.basicConfig(level=logging.WARNING)
    from atomscale_bluesky.sim import epics_env

    if epics_env.current() is None:  # loopback CA on free ports, before any CA library loads
        epics_env.apply(epics_env.loopback_env())
    with tempfile.TemporaryDirectory(prefix="bench-callback-") as spool:
        mbps = compression_rate(rheed_pool())
        print(
            f"zstd-3 on one core, these RHEED frames: {mbps:.0f} MB/s = "
            f"{mbps * 1e6 / (SHAPE[0] * SHAPE[1]):.0f} frames/s",
            flush=True,
        )
        if not args.skip_documents:
            for channels in (2, 22):
                o = documents_only(
                    min(args.events, 1000), channels, spool + f"/e{channels}", args.level
                )
                _print_documents(channels, o)
        if not args.skip_unpaced:
            case = Case(args.events, level=args.level, **setup)
            _print_overhead("(a) unpaced RunEngine count", case, overhead(case, spool + "/a"))
        case = Case(args.events, paced_fps=args.paced_fps, level=args.level, **setup)
        label = f"(b) count paced at {args.paced_fps:.0f} fps"
        _print_overhead(label, case, overhead(case, spool + "/p"))
        if not args.skip_two:
            case = Case(
                args.events, args.paced_fps, cameras=2, channels=22, level=args.level,
                channels_as_device=not args.channels_as_signals, **setup,
            )  # fmt: skip
            label = f"(d) two cameras and 22 channels paced at {args.paced_fps:.0f} fps"
            _print_overhead(label, case, overhead(case, spool + "/t"))
        if args.skip_ioc:
            return 0
        h, w = (int(x) for x in args.size.split("x"))
        rates = [float(r) for r in args.rates.split(",")]
        rows = end_to_end(rates, args.seconds, (h, w), spool + "/b")
    best_cb = best_bare = 0.0
    print(
        f"IOC {h}x{w} monitor runs of {args.seconds:.0f} s (frames counted after the first 0.5 s):"
    )
    for r in rows:
        ok_bare = r["delivered_no_cb"] >= r["published_no_cb"] > 0
        ok_cb = (
            r["delivered_cb"] >= r["published_cb"] > 0
            and r["stored_cb"] == r["images_cb"]
            and r["lost_cb"] == 0
            and r["missing_cb"] == 0
        )
        best_bare = r["fps"] if ok_bare else best_bare
        best_cb = r["fps"] if ok_cb else best_cb
        print(
            f"  {r['fps']:>6.0f} fps: no callback {r['delivered_no_cb']}/{r['published_no_cb']} "
            f"delivered; with callback {r['delivered_cb']}/{r['published_cb']} delivered, "
            f"{r['stored_cb']} of {r['images_cb']} in-run image events stored "
            f"({r['lost_cb']} lost, {r['missing_cb']} missing from the counter)",
            flush=True,
        )
    print(
        f"highest rate with no frame lost: {best_cb:.0f} fps with the callback, "
        f"{best_bare:.0f} fps without it"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
