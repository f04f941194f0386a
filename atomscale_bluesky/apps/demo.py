"""``atomscale-bluesky demo``: a simulated MBE growth streamed live, end to end, on one machine.

Starts the simulated RHEED camera and growth sensors (one caproto IOC process), the local
Atomscale-compatible server (or, with ``ATOMSCALE_API_KEY`` set, the cloud endpoint), runs a growth
recipe plan with the Atomscale callback subscribed, shows live progress, then reads back what was
stored and writes a summary figure. Every process it starts is stopped, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from atomscale_bluesky.settings import load_settings

logger = logging.getLogger(__name__)

SAMPLE = "demo GaAs(001) wafer"
TAGS = ("demo", "simulated")
CAMERA_PREFIX = "DEMO:RHEED:"
SENSORS_PREFIX = "DEMO:GROWTH:"
GROWTH_TEMPERATURE = 580.0  # degC, GaAs(001) homoepitaxy


@dataclass(frozen=True)
class DemoOptions:
    """What the demo runs: its length, the camera's rate and size, where results go."""

    duration: float = 40.0
    fps: float = 30.0
    width: int = 640
    height: int = 480
    rpm: float = 10.0
    shutter_cycles: int = 3
    output_dir: Path = Path("demo-output")
    figure: bool = True
    cloud: bool = False
    closed_loop_monolayers: float = 10.0  # the closed-loop step's target (0: no such step)

    def __post_init__(self) -> None:
        if self.duration < 6:
            raise ValueError("--duration must be at least 6 s (a settle and a shutter cycle)")
        if not 1 <= self.fps <= 240:
            raise ValueError("--fps must be between 1 and 240")
        if self.width < 16 or self.height < 16:
            raise ValueError("--width and --height must be at least 16 px")
        if self.shutter_cycles < 1:
            raise ValueError("--shutter-cycles must be at least 1")
        if self.closed_loop_monolayers < 0:
            raise ValueError("--closed-loop-monolayers must not be negative")


@dataclass
class StoredStream:
    """What the local server holds for one stream after the run."""

    data_id: str
    kind: str
    frames: int = 0
    points: int = 0
    channels: dict[str, int] = field(default_factory=dict)


@dataclass
class DemoResult:
    """The demo's outcome: the callback's run summary and what the server stored."""

    summary: Any
    stored: list[StoredStream]
    figure: Path | None
    endpoint: str
    data_dir: Path | None
    closed_loop: Any = None  # the closed-loop step's ClosedLoopReport, when it ran


def recipe_timing(options: DemoOptions) -> tuple[float, float, float]:
    """Settle, shutter-open and shutter-closed seconds that fill ``duration``."""
    settle = max(1.0, 0.1 * options.duration)
    cycle = (options.duration - settle) / options.shutter_cycles
    return settle, cycle * 2 / 3, cycle / 3


def _stored(reader: Any, data_ids: list[str]) -> list[StoredStream]:
    result = []
    for data_id in data_ids:
        match = next((s for s in reader.streams() if s.get("data_id") == data_id), None)
        if match is None:
            result.append(StoredStream(data_id=data_id, kind="missing"))
            continue
        if match.get("kind") == "rheed":
            info = reader.rheed_stream(data_id)
            result.append(StoredStream(data_id, "rheed", frames=int(info.get("n_frames", 0))))
        else:
            channels = reader.timeseries(data_id).get("channels", {})
            counts = {name: int(ch.get("count", 0)) for name, ch in channels.items()}
            result.append(
                StoredStream(data_id, "timeseries", points=sum(counts.values()), channels=counts)
            )
    return result


def specular_trace(reader: Any, data_id: str, options: DemoOptions, block: int = 256) -> np.ndarray:
    """Mean intensity of the specular window of every stored frame, read in blocks."""
    from atomscale_bluesky.sim.pattern import PatternConfig, RheedPattern

    rows, cols = RheedPattern(
        PatternConfig(width=options.width, height=options.height)
    ).specular_window()
    n_frames = int(reader.rheed_stream(data_id).get("n_frames", 0))
    values = []
    for start in range(0, n_frames, block):
        frames = reader.frames(data_id, start, min(n_frames, start + block))
        values.append(frames[:, rows, cols].reshape(len(frames), -1).mean(axis=1))
    return np.concatenate(values) if values else np.zeros(0)


def frame_times(reader: Any, data_id: str) -> np.ndarray:
    """Per-frame capture time (s): each chunk's start plus the frame's index over the chunk's span."""
    times: list[np.ndarray] = []
    for chunk in sorted(reader.chunk_times(data_id), key=lambda c: c["idx"]):
        n = int(chunk["n_frames"])
        start, end = chunk["start_unix_ms_utc"] / 1000.0, chunk["end_unix_ms_utc"] / 1000.0
        times.append(start + (end - start) * np.arange(n) / max(n, 1))
    return np.concatenate(times) if times else np.zeros(0)


def write_figure(reader: Any, summary: Any, options: DemoOptions, path: Path) -> Path:
    """A grower's figure: a RHEED frame, specular intensity with shutter periods, T and P traces."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rheed_id = next(r.data_id for r in summary.rheed if r.data_id)
    ts_id = summary.timeseries.data_id if summary.timeseries else None
    channels = summary.timeseries.channels if summary.timeseries else {}

    def points(key_part: str) -> tuple[np.ndarray, np.ndarray, str]:
        for name in channels:
            if name.endswith(key_part) and ts_id:
                t, v, units = reader.points(ts_id, name)
                return t, v, units or ""
        return np.zeros(0), np.zeros(0), ""

    trace = specular_trace(reader, rheed_id, options)
    t_frames = frame_times(reader, rheed_id)[: len(trace)]
    t0 = float(t_frames[0]) if len(t_frames) else time.time()
    n_frames = len(trace)
    mid = reader.frames(rheed_id, n_frames // 2, n_frames // 2 + 1)[0] if n_frames else None

    fig, axes = plt.subplots(4, 1, figsize=(9, 12), gridspec_kw={"height_ratios": [3, 2, 1.4, 1.4]})
    if mid is not None:
        axes[0].imshow(mid, cmap="gray", vmin=0, vmax=255)
    axes[0].set_title(
        f"RHEED frame {n_frames // 2} of {n_frames} ({options.width}x{options.height})"
    )
    axes[0].axis("off")

    axes[1].plot(t_frames - t0, trace, lw=0.8, color="tab:blue")
    t_shutter, v_shutter, _ = points("shutter_ga")
    if len(t_shutter):
        opened = None
        for t, v in zip(t_shutter - t0, v_shutter, strict=False):
            if v >= 0.5 and opened is None:
                opened = t
            elif v < 0.5 and opened is not None:
                axes[1].axvspan(opened, t, color="orange", alpha=0.2)
                opened = None
        if opened is not None:
            axes[1].axvspan(opened, t_frames[-1] - t0, color="orange", alpha=0.2)
    axes[1].set_ylabel("specular intensity (DN)")
    axes[1].set_title("Specular spot: oscillations while the Ga shutter is open (shaded)")

    t_sub, v_sub, u_sub = points("substrate_temperature")
    axes[2].plot(t_sub - t0, v_sub, color="tab:red")
    axes[2].set_ylabel(f"substrate T ({u_sub})")
    t_p, v_p, u_p = points("pressure")
    axes[3].semilogy(t_p - t0, np.clip(v_p, 1e-14, None), color="tab:green")
    axes[3].set_ylabel(f"pressure ({u_p})")
    axes[3].set_xlabel("time since first frame (s, hardware timestamps)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _print_summary(result: DemoResult) -> None:
    summary = result.summary
    print("\n=== Demo summary ===")
    print(summary.text())
    print(f"endpoint: {result.endpoint}")
    for stream in result.stored:
        if stream.kind == "rheed":
            print(f"  RHEED stream {stream.data_id}: {stream.frames} frames stored")
        elif stream.kind == "timeseries":
            print(
                f"  time series {stream.data_id}: {stream.points} points in "
                f"{len(stream.channels)} channels"
            )
        else:
            print(f"  stream {stream.data_id}: NOT FOUND on the server")
    print(f"frame gaps (missing from the camera sequence): {summary.missing}")
    print(f"lost (frames/points/chunks not delivered): {summary.lost + _lost_chunks(summary)}")
    if result.data_dir is not None:
        print(f"data: {result.data_dir} (Zarr frames under rheed/, points in atomscale.sqlite)")
    if result.figure is not None:
        print(f"figure: {result.figure}")
    if result.closed_loop is not None:
        print("\n".join(result.closed_loop.lines()))


def _lost_chunks(summary: Any) -> int:
    return sum(r.lost_chunks or 0 for r in summary.rheed)


def run_demo(options: DemoOptions) -> DemoResult:
    """Run the whole demo and return what it produced."""
    from atomscale_bluesky.sim import epics_env

    epics_env.apply(epics_env.loopback_env())  # before any CA library creates its context
    os.environ.setdefault("OPHYD_CONTROL_LAYER", "pyepics")
    os.environ["NO_PROXY"] = "127.0.0.1,localhost"

    output = options.output_dir.resolve()
    output.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        if options.cloud:
            from atomscale_bluesky.client import AtomscaleClient

            client = AtomscaleClient(spool_dir=output / "spool")
            endpoint, reader, data_dir = client.endpoint, None, None
            print(f"ATOMSCALE_API_KEY is set: streaming to the cloud endpoint {endpoint}")
        else:
            from atomscale_bluesky.client import AtomscaleClient
            from atomscale_bluesky.server.runner import running_server

            server = stack.enter_context(running_server(data_dir=output / "server-data"))
            client = AtomscaleClient(
                api_key=server.api_key, endpoint=server.url, spool_dir=output / "spool"
            )
            endpoint, reader, data_dir = server.url, server.reader, server.data_dir
            print(f"local Atomscale-compatible server on {server.url}, data in {server.data_dir}")
        stack.callback(client.close)
        summary, closed_loop = _run_recipe(options, stack, client, endpoint)
        stored = _stored(reader, summary.data_ids) if reader is not None else []
        figure = None
        if options.figure and reader is not None and any(r.data_id for r in summary.rheed):
            figure = write_figure(reader, summary, options, output / "demo-summary.png")
        (output / "summary.json").write_text(json.dumps(summary.as_dict(), indent=2, default=str))
        outcome = DemoResult(summary, stored, figure, endpoint, data_dir, closed_loop)
        _print_summary(outcome)
        return outcome


def _run_recipe(
    options: DemoOptions, stack: contextlib.ExitStack, client: Any, endpoint: str
) -> tuple[Any, Any]:
    """Start the IOC, connect the devices, run the growth recipe with the callback, then the
    closed-loop step; the recipe run's summary and the closed-loop report (None if skipped)."""
    from bluesky import RunEngine
    from bluesky.utils import RunEngineInterrupted

    from atomscale_bluesky.callback import AtomscaleCallback
    from atomscale_bluesky.callback.session import is_terminal
    from atomscale_bluesky.devices import GrowthSensors, RheedCamera, connect_all, disconnect_all
    from atomscale_bluesky.plans import growth_recipe
    from atomscale_bluesky.sim.launch import running_ioc

    ioc_args = [
        "--fps", str(options.fps), "--width", str(options.width), "--height", str(options.height),
        "--sensors-prefix", SENSORS_PREFIX,
    ]  # fmt: skip
    stack.enter_context(running_ioc("growth_chamber", CAMERA_PREFIX, args=ioc_args))
    print(f"simulated IOCs: camera {CAMERA_PREFIX} ({options.width}x{options.height} at "
          f"{options.fps:g} fps), sensors {SENSORS_PREFIX}")  # fmt: skip
    camera = RheedCamera(CAMERA_PREFIX, name="rheed")
    sensors = GrowthSensors(SENSORS_PREFIX, name="growth")
    connect_all(camera, sensors)
    # before the IOC stops (the stack unwinds in reverse): no "Virtual circuit disconnect"
    stack.callback(disconnect_all, camera, sensors)

    # the callback's own progress: a line redrawn in place on a terminal, a line every few
    # seconds into a log or a pipe; the demo prints the summary itself, with what was stored
    callback = AtomscaleCallback(
        client,
        progress="bar" if is_terminal(sys.stderr) else "lines",
        progress_interval_s=None if is_terminal(sys.stderr) else 2.0,
        print_summary=False,
    )
    stack.callback(callback.close)
    RE = RunEngine({})
    RE.subscribe(callback)
    settle, open_s, close_s = recipe_timing(options)
    plan = growth_recipe(
        camera,
        sensors,
        substrate_temperature=GROWTH_TEMPERATURE,
        rpm=options.rpm,
        shutter_cycles=options.shutter_cycles,
        open_s=open_s,
        close_s=close_s,
        settle_s=settle,
        fps=options.fps,
        # fps and rotation from the recipe's settings (the rotation readback is still ramping up)
        md={"sample": SAMPLE, "tags": list(TAGS), "name": "demo growth", "fps": options.fps},
    )
    print(f"running growth_recipe: heating the substrate to {GROWTH_TEMPERATURE:g} degC (the "
          f"shutters stay closed until it is there), then {options.shutter_cycles} shutter "
          f"cycles ({open_s:.1f} s open, {close_s:.1f} s closed) at {options.rpm:g} rpm, "
          f"about {options.duration:g} s of growth", flush=True)  # fmt: skip
    try:
        RE(plan)
    except RunEngineInterrupted:
        # Ctrl-C pauses a RunEngine; end the run properly so its streams are finalized
        RE.abort("interrupted by the user")
        raise KeyboardInterrupt from None
    print("run finished; finalizing streams (waiting for every chunk to be acknowledged)...")
    summary = callback.wait(timeout=None)
    closed_loop = None
    if options.closed_loop_monolayers > 0:
        from atomscale_bluesky.apps.closed_loop import run_closed_loop

        print(f"closed loop: growing {options.closed_loop_monolayers:g} monolayers, the shutter "
              "closed by Atomscale's live analysis", flush=True)  # fmt: skip
        closed_loop = run_closed_loop(
            RE,
            camera,
            sensors,
            callback,
            camera_prefix=CAMERA_PREFIX,
            monolayers=options.closed_loop_monolayers,
            fps=options.fps,
            md={"sample": SAMPLE, "tags": list(TAGS), "name": "demo closed loop"},
        )
        callback.wait(timeout=None)
    callback.close()
    return summary, closed_loop


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = DemoOptions()
    parser.add_argument(
        "--duration",
        type=float,
        default=defaults.duration,
        help="seconds of growth (default %(default)s)",
    )
    parser.add_argument(
        "--fps", type=float, default=defaults.fps, help="camera frame rate (default %(default)s)"
    )
    parser.add_argument("--width", type=int, default=defaults.width, help="frame width in px")
    parser.add_argument("--height", type=int, default=defaults.height, help="frame height in px")
    parser.add_argument(
        "--rpm", type=float, default=defaults.rpm, help="substrate rotation (0 = parked)"
    )
    parser.add_argument("--shutter-cycles", type=int, default=defaults.shutter_cycles)
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=defaults.output_dir,
        help="where data, summary and figure go",
    )
    parser.add_argument("--no-figure", action="store_true", help="skip the PNG figure")
    parser.add_argument(
        "--closed-loop-monolayers",
        type=float,
        default=defaults.closed_loop_monolayers,
        help="monolayers the closed-loop step grows under live analysis (0 = skip the step)",
    )
    parser.add_argument("--local", action="store_true", help="use the local server even when ATOMSCALE_API_KEY is set")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    cloud = load_settings().api_key is not None and not args.local
    try:
        options = DemoOptions(
            duration=args.duration,
            fps=args.fps,
            width=args.width,
            height=args.height,
            rpm=args.rpm,
            shutter_cycles=args.shutter_cycles,
            output_dir=args.output_dir,
            figure=not args.no_figure,
            cloud=cloud,
            closed_loop_monolayers=args.closed_loop_monolayers,
        )
    except ValueError as exc:
        print(f"atomscale-bluesky demo: {exc}", file=sys.stderr)
        return 2
    try:
        result = run_demo(options)
    except KeyboardInterrupt:
        print("\ninterrupted: every process the demo started has been stopped", file=sys.stderr)
        return 130
    lost = result.summary.lost + _lost_chunks(result.summary)
    return 0 if lost == 0 and result.summary.errors == 0 else 1
