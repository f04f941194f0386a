"""Run the simulated IOCs: in the foreground (``ioc_main``) or as managed subprocesses (``running_ioc``).

``running_ioc`` starts ``python -m atomscale_bluesky.sim.launch <kind> ...`` with the loopback EPICS
environment, waits until the IOC answers, and stops it by PID (SIGTERM, then SIGKILL). It also starts
a caproto repeater on the session's repeater port when none is listening, and stops only what it started.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from . import epics_env

KINDS = ("rheed_camera", "growth_sensors", "growth_chamber")
DEFAULT_PREFIXES = {
    "rheed_camera": "RHEED:",
    "growth_sensors": "GROWTH:",
    "growth_chamber": "RHEED:",
}
READY_PV = {
    "rheed_camera": "sim:Ready_RBV",
    "growth_sensors": "Ready_RBV",
    "growth_chamber": "sim:Ready_RBV",
}


class IocStartError(RuntimeError):
    """The IOC process exited or never answered."""


@dataclass
class IocHandle:
    """A running IOC subprocess: its kind, PV prefix, PID, environment and log file."""

    kind: str
    prefix: str
    process: subprocess.Popen[bytes]
    env: dict[str, str]
    log_path: Path
    args: tuple[str, ...] = ()
    _stopped: bool = field(default=False, repr=False)

    @property
    def pid(self) -> int:
        return self.process.pid

    def view(self, kind: str, prefix: str) -> IocHandle:
        """A handle on the same process under another prefix (``growth_chamber`` hosts two IOCs)."""
        return IocHandle(kind, prefix, self.process, self.env, self.log_path, self.args)

    def pv(self, suffix: str) -> str:
        """Full PV name for ``suffix`` (e.g. ``"cam1:Acquire"``)."""
        return self.prefix + suffix

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM by PID, SIGKILL if it does not exit within ``timeout``."""
        if self._stopped:
            return
        self._stopped = True
        _terminate(self.process, timeout)


def _terminate(process: subprocess.Popen[bytes], timeout: float) -> None:
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout)


def _udp_port_taken(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


@contextlib.contextmanager
def running_repeater(env: Mapping[str, str]) -> Iterator[subprocess.Popen[bytes] | None]:
    """A caproto repeater on ``EPICS_CA_REPEATER_PORT`` unless one already listens there."""
    port = int(env.get("EPICS_CA_REPEATER_PORT", "5065"))
    if _udp_port_taken(port):
        yield None
        return
    process = subprocess.Popen(
        [sys.executable, "-m", "caproto.commandline.repeater", "-q"],
        env=dict(env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 5.0
        while not _udp_port_taken(port) and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.05)
        yield process
    finally:
        _terminate(process, 3.0)


def child_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """``os.environ`` plus the loopback CA settings (the session's, or ``env``, or fresh free ports)."""
    merged = dict(os.environ)
    if env is not None:
        merged.update(env)
    elif epics_env.current() is None:
        merged.update(epics_env.loopback_env().variables)
    merged.setdefault("PYTHONUNBUFFERED", "1")
    return merged


def _wait_ready(handle: IocHandle, timeout: float) -> None:
    from caproto.sync.client import read

    pv = handle.pv(READY_PV[handle.kind])
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if handle.process.poll() is not None:
            raise IocStartError(
                f"{handle.kind} IOC exited with {handle.process.returncode}:\n{handle.log_tail()}"
            )
        try:
            if int(read(pv, timeout=0.5, repeater=False).data[0]) == 1:
                return
        except Exception as exc:  # not up yet
            last_error = exc
        time.sleep(0.1)
    raise IocStartError(f"{handle.kind} IOC did not answer {pv} in {timeout} s ({last_error})")


@contextlib.contextmanager
def running_ioc(
    kind: str,
    prefix: str | None = None,
    *,
    env: Mapping[str, str] | None = None,
    args: Sequence[str] = (),
    timeout: float = 30.0,
) -> Iterator[IocHandle]:
    """Run the ``kind`` IOC under ``prefix`` for the block.

    Kinds: "rheed_camera", "growth_sensors", or "growth_chamber" (both in one process: the camera
    under ``prefix`` follows sensors served under ``--sensors-prefix``, default "GROWTH:"). With CA
    pinned to one loopback address, two IOC processes cannot share a server port, so tests that
    need both run them as one "growth_chamber" process.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown IOC kind {kind!r}; expected one of {KINDS}")
    prefix = DEFAULT_PREFIXES[kind] if prefix is None else prefix
    full_env = child_env(env)
    with running_repeater(full_env), tempfile.TemporaryDirectory(prefix="ioc-") as tmp:
        log_path = Path(tmp) / f"{kind}.log"
        cmd = [sys.executable, "-m", "atomscale_bluesky.sim.launch", kind, "--prefix", prefix, "-q"]
        cmd += [str(a) for a in args]
        with open(log_path, "wb") as log_file:
            process = subprocess.Popen(cmd, env=full_env, stdout=log_file, stderr=subprocess.STDOUT)
        handle = IocHandle(kind, prefix, process, full_env, log_path, tuple(cmd[3:]))
        try:
            _wait_ready(handle, timeout)
            yield handle
        finally:
            handle.stop()


def _camera_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--width", type=int, default=640, help="frame width in px (default 640)")
    parser.add_argument("--height", type=int, default=480, help="frame height in px (default 480)")
    parser.add_argument("--bit-depth", type=int, default=8, help="8 (UInt8) or 10..16 (UInt16)")
    parser.add_argument(
        "--fps", type=float, default=30.0, help="initial frame rate (AcquirePeriod = 1/fps)"
    )
    parser.add_argument("--seed", type=int, default=0, help="noise and pattern seed")
    parser.add_argument(
        "--sensors-prefix", default=None, help="follow this sensors IOC (e.g. GROWTH:)"
    )
    parser.add_argument(
        "--continuous", action="store_true", help="start acquiring in Continuous mode at start-up"
    )


def _sensor_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--update-rate", type=float, default=10.0, help="readback rate in Hz")
    parser.add_argument("--seed", type=int, default=0, help="noise seed")


def ioc_main(kind: str, argv: list[str]) -> None:
    """Run the named IOC in the foreground with caproto's argument parsing plus our options."""
    from caproto.server import run, template_arg_parser

    if kind not in KINDS:
        raise SystemExit(f"unknown IOC kind {kind!r}; expected one of {', '.join(KINDS)}")
    desc = {
        "rheed_camera": "Simulated RHEED camera (areaDetector-compatible PVs).",
        "growth_sensors": "Simulated MBE growth sensors.",
        "growth_chamber": "Simulated RHEED camera and growth sensors in one IOC process.",
    }[kind]
    parser, split_args = template_arg_parser(
        desc=desc,
        default_prefix=DEFAULT_PREFIXES[kind],
        argv=argv,
        supported_async_libs=["asyncio"],
    )
    if kind != "growth_sensors":
        _camera_options(parser)
    if kind == "growth_sensors":
        _sensor_options(parser)
    if kind == "growth_chamber":
        parser.add_argument(
            "--update-rate", type=float, default=10.0, help="sensor readback rate (Hz)"
        )
    args = parser.parse_args(argv)
    ioc_options, run_options = split_args(args)
    prefix = ioc_options["prefix"]
    if kind == "growth_chamber":
        from .camera_ioc import CameraConfig, build_camera_ioc
        from .sensors_ioc import SensorsConfig, build_sensors_ioc

        sensors_prefix = args.sensors_prefix or "GROWTH:"
        try:
            config = CameraConfig(
                width=args.width,
                height=args.height,
                bit_depth=args.bit_depth,
                fps=args.fps,
                seed=args.seed,
                sensors_prefix=sensors_prefix,
                continuous=args.continuous,
            )
            sensors_config = SensorsConfig(update_rate_hz=args.update_rate, seed=args.seed)
        except ValueError as exc:
            parser.error(str(exc))
        pvdb = dict(build_sensors_ioc(sensors_prefix, sensors_config).pvdb)
        pvdb.update(build_camera_ioc(prefix, config).pvdb)
        run(pvdb, **run_options)
        return
    if kind == "rheed_camera":
        from .camera_ioc import CameraConfig, build_camera_ioc

        try:
            config = CameraConfig(
                width=args.width,
                height=args.height,
                bit_depth=args.bit_depth,
                fps=args.fps,
                seed=args.seed,
                sensors_prefix=args.sensors_prefix,
                continuous=args.continuous,
            )
        except ValueError as exc:
            parser.error(str(exc))
        group: object = build_camera_ioc(prefix, config)
    else:
        from .sensors_ioc import SensorsConfig, build_sensors_ioc

        try:
            sensors = SensorsConfig(update_rate_hz=args.update_rate, seed=args.seed)
        except ValueError as exc:
            parser.error(str(exc))
        group = build_sensors_ioc(prefix, sensors)
    run(group.pvdb, **run_options)  # type: ignore[attr-defined]


def main(argv: list[str] | None = None) -> None:
    """``python -m atomscale_bluesky.sim.launch KIND [options]``."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in KINDS:
        raise SystemExit(
            f"usage: python -m atomscale_bluesky.sim.launch {{{','.join(KINDS)}}} [options]"
        )
    ioc_main(argv[0], argv[1:])


if __name__ == "__main__":
    main()
