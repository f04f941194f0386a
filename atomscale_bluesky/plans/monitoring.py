"""Runs that stream every RHEED frame and sensor readback: monitored for a duration, or counted.

``monitor_growth`` watches the camera and sensors for a duration; ``count_growth`` takes triggered
snapshots. Every wait is a short sleep between checkpoints, so pause and abort act promptly.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp

from atomscale_bluesky.plans.stubs import Plan, acquiring, wait


def monitored_signals(*things: Any) -> list[Any]:
    """The signals to monitor for devices, signals, lists of them, or None (nothing).

    A device with a ``monitored`` list (this package's devices) gives it; an ophyd device gives
    the signals it reads (its ``read_attrs``, sub-devices expanded); an ophyd-async device its
    readable signals; a signal itself. Each signal once, in order.
    """
    found: list[Any] = []
    for thing in things:
        if thing is None:
            continue
        if isinstance(thing, (list, tuple)):
            found += monitored_signals(*thing)
        else:
            found += _signals_of(thing)
    unique: dict[int, Any] = {}
    for signal in found:
        unique.setdefault(id(signal), signal)
    return list(unique.values())


def _as_list(thing: Any) -> list[Any]:
    """None as [], a list or tuple as a list, anything else as a one-item list."""
    if thing is None:
        return []
    return list(thing) if isinstance(thing, (list, tuple)) else [thing]


def _signals_of(obj: Any) -> list[Any]:
    monitored = getattr(obj, "monitored", None)
    if monitored is not None:
        return list(monitored)
    read_attrs = getattr(obj, "read_attrs", None)
    if read_attrs is not None and hasattr(obj, "component_names"):  # an ophyd device
        leaves = [_attr(obj, name) for name in read_attrs]
        return [leaf for leaf in leaves if not hasattr(leaf, "component_names")]
    read_funcs = getattr(obj, "_read_funcs", None)
    if read_funcs is not None:  # an ophyd-async StandardReadable: what its read() reads
        found: list[Any] = []
        for child in (getattr(f, "__self__", None) for f in read_funcs):
            if child is not None:
                found += (
                    [child] if callable(getattr(child, "get_value", None)) else _signals_of(child)
                )
        return found
    if callable(getattr(obj, "subscribe", None)) or callable(getattr(obj, "get_value", None)):
        return [obj]
    raise ValueError(
        f"cannot monitor {obj!r}: pass a signal, an ophyd or ophyd-async device, or a list of "
        "them (for example signals=[dev.temperature, dev.pressure])"
    )


def _attr(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def run_metadata(
    plan_name: str, devices: Iterable[Any], md: Mapping[str, Any] | None, **extra: Any
) -> dict[str, Any]:
    """A start document's metadata: plan name, detector names and ``extra``; ``md`` overrides them."""
    base: dict[str, Any] = {
        "plan_name": plan_name,
        "detectors": [d.name for d in devices],
        **extra,
    }
    base.update(md or {})
    return base


def monitored_run(
    camera: Any,
    signals: list[Any],
    body: Plan,
    *,
    md: dict[str, Any],
    acquire: bool,
    fps: float | None,
) -> Plan:
    """One run of ``body`` with every signal monitored, the camera acquiring if ``acquire``.

    The camera is left as it was found (see :func:`acquiring`). The monitors are plain messages
    inside the run rather than bluesky's ``monitor_during_wrapper``: that preprocessor keeps
    every message of the plan until it ends, which grows without bound over an hours-long growth.
    """
    monitoring: list[Any] = []

    def inner() -> Plan:
        for signal in signals:
            yield from bps.monitor(signal, name=f"{signal.name}_monitor")
            monitoring.append(signal)
        if acquire and camera is not None:
            return (yield from acquiring(camera, body, fps=fps))
        return (yield from body)

    def cleanup() -> Plan:
        if acquire and camera is not None:
            yield from bps.sleep(0.2)  # let the last frames' monitor events arrive
        while monitoring:
            yield from bps.unmonitor(monitoring.pop())

    return (yield from bpp.run_wrapper(bpp.finalize_wrapper(inner(), cleanup()), md=md))


def snapshots(sensors: Any, period: float, duration: float, *, step: float = 0.1) -> Plan:
    """Record the sensors (a device or a list) in the primary stream every ``period`` s."""
    readers = list(sensors) if isinstance(sensors, (list, tuple)) else [sensors]
    deadline = time.monotonic() + duration
    while time.monotonic() < deadline:
        yield from bps.trigger_and_read(readers)
        yield from wait(min(period, max(0.0, deadline - time.monotonic())), step=step)


def monitor_growth(
    camera: Any,
    sensors: Any = None,
    duration: float = 60.0,
    *,
    signals: Iterable[Any] = (),
    md: Mapping[str, Any] | None = None,
    acquire: bool = True,
    fps: float | None = None,
    snapshot_period: float | None = None,
    step: float = 0.1,
) -> Plan:
    """One run monitoring every frame and every sensor readback for ``duration`` s.

    ``camera`` is the RHEED camera (its frame and frame counters are monitored; None for none);
    ``sensors`` a device, a signal or a list of them, and ``signals`` more signals, all
    monitored (any ophyd or ophyd-async device or signal: a device gives the signals it
    reads). ``acquire`` makes sure the camera acquires during the run and leaves it as it
    found it: a camera already acquiring (a live view) keeps acquiring, a stopped one is
    started in Continuous mode and stopped at the end, also on abort. ``snapshot_period``
    additionally records the sensors in the primary stream every so many seconds. ``md``
    (e.g. ``sample``, ``project_id``, ``tags``) goes into the start document.
    """
    readable = _as_list(sensors) + list(signals)
    to_monitor = monitored_signals(camera, readable)
    devices = _as_list(camera) + readable
    run_md = run_metadata(
        "monitor_growth", devices, md, plan_args={"duration": duration, "fps": fps}
    )
    if snapshot_period is None or not readable:
        body = wait(duration, step=step)
    else:
        body = snapshots(readable, snapshot_period, duration, step=step)
    return (yield from monitored_run(camera, to_monitor, body, md=run_md, acquire=acquire, fps=fps))


def count_growth(
    camera: Any,
    sensors: Any,
    num: int,
    *,
    delay: float | None = None,
    md: Mapping[str, Any] | None = None,
) -> Plan:
    """``num`` triggered snapshots of the camera (one new frame each) and the sensors (step style)."""
    from bluesky.plans import count

    devices = _as_list(camera) + _as_list(sensors)
    run_md = run_metadata("count_growth", devices, md)
    return (yield from count(devices, num=num, delay=delay or 0.0, md=run_md))
