"""Frame rate a RunEngine monitor receives from the simulated camera with no drops, per frame size.

For each size a camera IOC runs in its own process; for each target rate the camera streams for a
few seconds into ``monitor_growth`` (ophyd, pyepics layer). Reported per row: the IOC's own publish
rate (from its frame counter), frames delivered to the RunEngine, drops (counter gaps and frames the
IOC published that never arrived) and process CPU. ``python -m benchmarks ioc [--seconds S]``.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass

from atomscale_bluesky.sim import epics_env


@dataclass
class Row:
    size: str
    target_fps: float
    ioc_fps: float
    delivered_fps: float
    published: int
    delivered: int
    dropped: int
    ioc_cpu: float
    client_cpu: float

    @property
    def clean(self) -> bool:
        return self.dropped == 0 and self.ioc_fps >= 0.95 * self.target_fps


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _measure(RE, camera, ioc_pid: int, size: str, fps: float, seconds: float) -> Row:  # noqa: N803
    from caproto.sync.client import read

    from atomscale_bluesky.plans import monitor_growth

    counters: list[int] = []
    images = [0]
    streams: dict[str, str] = {}

    def collect(name: str, doc: dict) -> None:
        if name == "descriptor":
            streams[doc["uid"]] = doc["name"]
        elif name == "event":
            stream = streams[doc["descriptor"]]
            if stream == "rheed_array_counter_monitor":
                counters.append(doc["data"]["rheed_array_counter"])
            elif stream == "rheed_image_monitor":
                images[0] += 1

    pv = camera.prefix + "image1:ArrayCounter_RBV"
    before = int(read(pv, repeater=False).data[0])
    c0, i0, t0 = time.process_time(), _cpu_seconds(ioc_pid), time.monotonic()
    RE(monitor_growth(camera, None, seconds, fps=fps), collect)
    elapsed = time.monotonic() - t0
    client_cpu, ioc_cpu = time.process_time() - c0, _cpu_seconds(ioc_pid) - i0
    after = int(read(pv, repeater=False).data[0])
    published = after - before
    seen = counters[1:]  # the first monitor event is the value at subscription time
    delivered = min(len(seen), images[0] - 1)
    gaps = sum(max(0, b - a - 1) for a, b in zip(seen, seen[1:], strict=False))
    dropped = max(published - delivered, gaps)
    return Row(
        size,
        fps,
        published / seconds,
        delivered / seconds,
        published,
        delivered,
        dropped,
        100 * ioc_cpu / elapsed,
        100 * client_cpu / elapsed,
    )


def run(sizes: list[tuple[int, int]], rates: list[float], seconds: float) -> list[Row]:
    if epics_env.current() is None:
        epics_env.apply(epics_env.loopback_env())
    os.environ.setdefault("OPHYD_CONTROL_LAYER", "pyepics")
    from bluesky import RunEngine

    from atomscale_bluesky.devices import RheedCamera, connect_all
    from atomscale_bluesky.sim.launch import running_ioc

    RE = RunEngine({}, call_returns_result=False)  # noqa: N806
    rows: list[Row] = []
    for width, height in sizes:
        size = f"{width}x{height}"
        with running_ioc(
            "rheed_camera", f"BENCH{width}:", args=["--width", str(width), "--height", str(height)]
        ) as ioc:
            camera = RheedCamera(ioc.prefix, name="rheed")
            connect_all(camera)
            for fps in rates:
                row = _measure(RE, camera, ioc.pid, size, fps, seconds)
                rows.append(row)
                print(_format(row), flush=True)
                if not row.clean and fps != rates[0]:
                    break  # higher rates will not be clean either
            camera.destroy()
    return rows


HEADER = (
    f"{'size':>10} {'target':>7} {'IOC fps':>8} {'RE fps':>8} {'published':>9} {'delivered':>9} "
    f"{'dropped':>7} {'IOC cpu%':>8} {'client cpu%':>11}"
)


def _format(r: Row) -> str:
    return (
        f"{r.size:>10} {r.target_fps:7.0f} {r.ioc_fps:8.1f} {r.delivered_fps:8.1f} {r.published:9d} "
        f"{r.delivered:9d} {r.dropped:7d} {r.ioc_cpu:8.1f} {r.client_cpu:11.1f}"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks ioc", description=__doc__)
    parser.add_argument("--seconds", type=float, default=4.0, help="monitor duration per rate")
    parser.add_argument("--rates", default="60,120,240,360", help="comma-separated target fps")
    parser.add_argument("--sizes", default="640x480,1024x1024", help="comma-separated WxH")
    args = parser.parse_args(argv)
    rates = [float(x) for x in args.rates.split(",")]
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    print(HEADER, flush=True)
    rows = run([(w, h) for w, h in sizes], rates, args.seconds)
    print("\nmax clean rate (no drops, IOC at >= 95% of target):")
    for width, height in sizes:
        size = f"{width}x{height}"
        clean = [r.target_fps for r in rows if r.size == size and r.clean]
        print(f"  {size}: {max(clean) if clean else 0:.0f} fps (load avg {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
