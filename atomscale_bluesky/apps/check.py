"""``atomscale-bluesky check PREFIX``: will this camera (and these sensors) stream, and how?

It connects to an areaDetector camera's PVs with stock ophyd signals, reads one frame, builds the
descriptor Bluesky would emit for them and routes it as the callback does, then prints the frame's
shape, dtype and bit depth, where fps and the frame counter come from, and each key's route and
why. It exits non-zero, with a clear message, when something will not work (no IOC, no image, a
shape it cannot learn, a sensor PV that does not answer).
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from atomscale_bluesky.callback.pixel_format import first_declared
from atomscale_bluesky.callback.routing import FrameKey, Route, RoutingOptions, route_descriptor

__all__ = ["add_arguments", "run"]

NAME = "camera"
# (key suffix, PV suffix under the image plugin or the driver, role) read beside the image
_CAMERA_READINGS = (
    ("array_counter", "{image}ArrayCounter_RBV", "reading"),
    ("array_size0", "{image}ArraySize0_RBV", "config"),
    ("array_size1", "{image}ArraySize1_RBV", "config"),
    ("array_size2", "{image}ArraySize2_RBV", "config"),
    ("acquire_period", "{cam}AcquirePeriod_RBV", "config"),
    ("data_type", "{cam}DataType_RBV", "config"),
    ("color_mode", "{cam}ColorMode_RBV", "info"),
    ("pixel_format", "{cam}PixelFormat_RBV", "config"),
)


class CheckFailed(Exception):
    """Something will not work; the message says what and what to do."""


@dataclass
class Probe:
    """What was read from the IOC: readings and descriptions by data key, what did not answer."""

    readings: dict[str, dict[str, Any]] = field(default_factory=dict)
    described: dict[str, dict[str, Any]] = field(default_factory=dict)
    roles: dict[str, str] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)  # key -> PV that did not connect


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("prefix", help="the camera IOC's PV prefix, e.g. 13SIM1: or RHEED:")
    parser.add_argument("--image", default="image1:", help="image plugin suffix (image1:)")
    parser.add_argument("--cam", default="cam1:", help="driver suffix (cam1:)")
    parser.add_argument(
        "--sensor", action="append", default=[], metavar="PV", help="a sensor PV (repeatable)"
    )
    parser.add_argument(
        "--acquire", action="store_true", help="take one frame first (Acquire, Single mode)"
    )
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds per connection")


def run(args: argparse.Namespace) -> int:
    try:
        report = check(args.prefix, args.image, args.cam, args.sensor, args.acquire, args.timeout)
    except CheckFailed as exc:
        print(f"atomscale-bluesky check: {exc}", file=sys.stderr)
        return 1
    print(report)
    return 0


def check(
    prefix: str,
    image: str = "image1:",
    cam: str = "cam1:",
    sensors: list[str] | None = None,
    acquire: bool = False,
    timeout: float = 5.0,
) -> str:
    """The report on what would stream; raises CheckFailed when something will not work."""
    pvs = {"image": f"{prefix}{image}ArrayData"}
    for suffix, template, _ in _CAMERA_READINGS:
        pvs[suffix] = prefix + template.format(image=image, cam=cam)
    if acquire:
        _acquire_one(prefix + cam, pvs["array_counter"], timeout)
    probe = _probe(pvs, sensors or [], timeout)
    descriptor = _descriptor(probe)
    route = route_descriptor(descriptor, RoutingOptions())
    frame = np.asarray(probe.readings[f"{NAME}_image"]["value"])
    return _report(prefix, route, probe, frame)


def _signal(pv: str, name: str, string: bool = False) -> Any:
    from ophyd import EpicsSignalRO

    return EpicsSignalRO(pv, name=name, string=string)


def _probe(pvs: Mapping[str, str], sensors: list[str], timeout: float) -> Probe:
    """Connect and read every PV; the image and the sensors must answer, the rest may not.

    The required ones are waited for first, each for ``timeout``; the optional ones share one
    ``timeout`` (a driver without PixelFormat_RBV costs it once)."""
    probe = Probe()
    required = {f"{NAME}_image": (pvs["image"], _signal(pvs["image"], f"{NAME}_image"))}
    for pv in sensors:
        name = re.sub(r"[^A-Za-z0-9]+", "_", pv).strip("_")
        required[name] = (pv, _signal(pv, name))
    optional = {
        f"{NAME}_{k}": (pv, _signal(pv, f"{NAME}_{k}", k in _STRINGS))
        for k, pv in pvs.items()
        if k != "image"
    }
    for key, (pv, sig) in required.items():
        _read_into(probe, key, pv, sig, timeout)
    if f"{NAME}_image" in probe.missing:
        raise CheckFailed(
            f"no answer from {pvs['image']}: is the IOC running, is the prefix right, and does "
            "EPICS_CA_ADDR_LIST reach it?"
        )
    dead = [v for k, v in probe.missing.items() if k in required]
    if dead:
        raise CheckFailed(f"sensor PVs do not answer: {', '.join(dead)}")
    deadline = time.monotonic() + timeout
    for key, (pv, sig) in optional.items():
        _read_into(probe, key, pv, sig, max(0.1, deadline - time.monotonic()))
    for suffix, _, role in _CAMERA_READINGS:
        probe.roles[f"{NAME}_{suffix}"] = role
    return probe


def _read_into(probe: Probe, key: str, pv: str, sig: Any, timeout: float) -> None:
    try:
        sig.wait_for_connection(timeout=timeout)
        probe.readings.update(sig.read())
        probe.described.update(sig.describe())
    except Exception as exc:  # noqa: BLE001 - any failure to connect or read is reported
        probe.missing[key] = f"{pv} ({type(exc).__name__})"


_STRINGS = ("data_type", "color_mode", "pixel_format")


def _acquire_one(cam: str, counter_pv: str, timeout: float) -> None:
    """Take one frame (Single mode) and wait until the image plugin counted it."""
    from ophyd import EpicsSignal

    counter = _signal(counter_pv, "counter")
    mode, acquire = (
        EpicsSignal(cam + "ImageMode", name="mode"),
        EpicsSignal(cam + "Acquire", name="acq"),
    )
    try:
        for sig in (counter, mode, acquire):
            sig.wait_for_connection(timeout=timeout)
        before, old_mode = counter.get(), mode.get()
        mode.put(0, wait=True)
        acquire.put(1)
        deadline = time.monotonic() + timeout
        while counter.get() == before and time.monotonic() < deadline:
            time.sleep(0.05)
        mode.put(old_mode, wait=True)
    except Exception as exc:  # noqa: BLE001
        raise CheckFailed(f"cannot take a frame through {cam}Acquire: {exc}") from exc


def _descriptor(probe: Probe) -> dict[str, Any]:
    """The descriptor a RunEngine would emit for a device reading these signals."""
    data_keys: dict[str, Any] = {}
    config: dict[str, Any] = {"data": {}, "timestamps": {}, "data_keys": {}}
    for key, dk in probe.described.items():
        dk = {**dk, "object_name": NAME if key.startswith(NAME) else key}
        if key == f"{NAME}_image":
            dk["dtype"] = "array"
        role = probe.roles.get(key, "reading")
        if role == "config":
            config["data"][key] = probe.readings[key]["value"]
            config["timestamps"][key] = probe.readings[key]["timestamp"]
            config["data_keys"][key] = dk
        elif role == "reading":
            data_keys[key] = dk
    return {
        "uid": "check",
        "name": "primary",
        "data_keys": data_keys,
        "configuration": {NAME: config},
    }


def _report(prefix: str, route: Route, probe: Probe, frame: np.ndarray) -> str:
    key = f"{NAME}_image"
    fkey = route.frames.get(key)
    if fkey is None:
        raise CheckFailed(f"{key} would not stream: {route.skipped.get(key, 'not routed')}")
    counter = probe.readings.get(f"{NAME}_array_counter", {}).get("value")
    if frame.size <= 1 or counter == 0:
        raise CheckFailed(
            f"no image in {prefix}: the camera has not produced a frame yet "
            "(start acquisition, or run check with --acquire)"
        )
    if fkey.frame_shape is None and frame.ndim < 2:
        raise CheckFailed(
            f"unknown shape: {frame.size} pixel values and no ArraySize0/1_RBV readings "
            "(give the callback frame_shapes={'camera_image': (height, width)})"
        )
    shape = fkey.frame_shape or (frame.shape[-2], frame.shape[-1])
    per = fkey.frames_per_event or 1
    if frame.size not in (shape[0] * shape[1] * per, shape[0] * shape[1] * per * 3):
        raise CheckFailed(f"the image holds {frame.size} values, not {shape} ({per} per event)")
    lines = [
        f"camera {prefix}: frames of {shape[0]} x {shape[1]} pixels, dtype {frame.dtype}, "
        f"bit depth {_bit_depth(fkey, route, frame)}",
        f"  fps: {_fps(fkey, probe)}",
        f"  frame counter: {fkey.counter_key or 'none (gaps found from frame times only)'}",
        f"  data type {_info(probe, 'data_type')}, color mode {_info(probe, 'color_mode')}, "
        f"pixel format {_info(probe, 'pixel_format')}",
        "routes:",
    ]
    lines.extend(_routes(route, probe))
    if probe.missing:
        lines.append("not available: " + ", ".join(sorted(probe.missing.values())))
    lines.append("OK: this camera streams as RHEED video")
    return "\n".join(lines)


def _bit_depth(fkey: FrameKey, route: Route, frame: np.ndarray) -> str:
    """The bit depth as the callback decides it: declared by the data key, the camera's
    DataType/PixelFormat configuration, else guessed from the run's first frames."""
    if fkey.bit_depth:
        return f"{fkey.bit_depth} (declared)"
    declared = first_declared([fkey.pixels, route.config_pixels.get(NAME)])
    if declared.bit_depth is not None:
        return f"{declared.bit_depth} ({declared.bit_depth_source})"
    return (
        f"up to {frame.dtype.itemsize * 8}: guessed from the run's first frames "
        "(pass bit_depth= for a 12-bit camera)"
    )


def _fps(fkey: FrameKey, probe: Probe) -> str:
    if fkey.fps:
        return (
            f"{fkey.fps:.3g} declared by AcquirePeriod_RBV (checked against the measured cadence)"
        )
    return "measured from the frames' hardware timestamps (no AcquirePeriod_RBV)"


def _info(probe: Probe, suffix: str) -> str:
    reading = probe.readings.get(f"{NAME}_{suffix}")
    return "?" if reading is None else str(reading["value"])


def _routes(route: Route, probe: Probe) -> list[str]:
    lines = []
    for key, fk in route.frames.items():
        where = f"shape {fk.frame_shape} from ArraySize readings" if fk.flat else "its shape"
        lines.append(f"  {key}: RHEED frames ({where}; areaDetector image {fk.source})")
    for key, ch in route.channels.items():
        role = (
            "frame counter, and "
            if any(f.counter_key == key for f in route.frames.values())
            else ""
        )
        lines.append(f"  {key}: {role}time-series channel {ch.name!r} (a numeric scalar)")
    for key, why in route.skipped.items():
        lines.append(f"  {key}: skipped ({why})")
    for key in sorted(k for k, r in probe.roles.items() if r == "config" and k in probe.readings):
        lines.append(f"  {key}: camera configuration (frame size, fps, pixels), not a channel")
    return lines
