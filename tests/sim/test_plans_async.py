"""Growth plans (responsive, metadata, recipe) and the ophyd-async devices."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from bluesky.utils import RunEngineInterrupted
from plugins.ioc_fixtures import ca_value, ca_write

from atomscale_bluesky.plans import growth_recipe, monitor_growth


def test_monitor_growth_pauses_and_aborts_promptly_and_stops_the_camera(
    RE, camera, sensors, camera_ioc
):
    """An hour-long growth pauses at once: it waits in short checkpointed sleeps, not one long one.

    The pause is requested once the plan's waiting has begun (counted in messages, not seconds).
    """
    docs = []
    sleeps: list[float] = []
    waiting = threading.Event()

    def hook(msg) -> None:
        if msg.command == "sleep" and not waiting.is_set():
            sleeps.append(msg.args[0])
            if len(sleeps) == 5:
                waiting.set()

    def pause_when_waiting() -> None:
        if waiting.wait(120):
            RE.request_pause()  # from another thread, as Ctrl+C would

    RE.msg_hook = hook
    pauser = threading.Thread(target=pause_when_waiting, daemon=True)
    pauser.start()
    try:
        with pytest.raises(RunEngineInterrupted):
            RE(
                monitor_growth(camera, sensors, 3600.0, md={"sample": "S2"}),
                lambda n, d: docs.append((n, d)),
            )
    finally:
        RE.msg_hook = None
        waiting.set()
        pauser.join(5)
    assert RE.state == "paused"
    # every sleep before the pause was one short step (0.1 s), each after a checkpoint
    assert len(sleeps) == 5 and max(sleeps) <= 0.1
    RE.abort("test")
    stop = [d for n, d in docs if n == "stop"][0]
    assert stop["exit_status"] == "abort"
    assert ca_value(camera_ioc.pv("cam1:Acquire_RBV")) == "Done"  # finalize stopped the camera


def test_growth_recipe_cycles_shutters_and_produces_oscillations(
    RE, camera, sensors, camera_ioc, sensors_ioc
):
    ca_write(camera_ioc.pv("sim:FollowSensors"), 1)  # the camera follows the sensors IOC
    docs = []

    def collect(name, doc):
        docs.append((name, doc))

    start_ml = ca_value(camera_ioc.pv("sim:Monolayers_RBV"))
    RE(
        growth_recipe(
            camera,
            sensors,
            substrate_temperature=580.0,
            rpm=0.0,
            shutter_cycles=2,
            open_s=2.5,
            close_s=1.0,
            md={"sample": "GaAs-42", "project_id": "proj"},
        ),
        collect,
    )
    start = docs[0][1]
    assert start["plan_name"] == "growth_recipe" and start["sample"] == "GaAs-42"
    assert start["project_id"] == "proj" and start["rotations_per_min"] == 0.0
    assert [d for n, d in docs if n == "stop"][0]["exit_status"] == "success"
    grown = ca_value(camera_ioc.pv("sim:Monolayers_RBV")) - start_ml
    streams = {d["uid"]: d["name"] for n, d in docs if n == "descriptor"}
    shutter = [
        (d["timestamps"]["growth_shutter_ga"], d["data"]["growth_shutter_ga"])
        for n, d in docs
        if n == "event" and streams[d["descriptor"]] == "growth_shutter_ga_monitor"
    ]
    shutter_values = [value for _, value in shutter]
    assert shutter_values.count(1) >= 2 and shutter_values[-1] == 0
    # the growth is what the shutter's own open time (IOC stamps; a loaded machine may keep it
    # open longer than the plan's 2 x 2.5 s) at the sensors' monolayer period makes
    edges = zip(shutter, shutter[1:], strict=False)
    open_s = sum(t1 - t0 for (t0, v0), (t1, v1) in edges if (v0, v1) == (1, 0))
    assert open_s >= 2 * 2.5 - 0.2
    period = ca_value(sensors_ioc.pv("growth:MonolayerPeriod_RBV"))
    expected = open_s / period  # the camera follows the sensors at their 10 Hz: it lags a bit
    assert expected - 2.0 < grown < expected + 2.0, (grown, open_s, period)
    assert ca_value(sensors_ioc.pv("substrate:TempSP")) == pytest.approx(580.0)


def test_ophyd_async_devices_describe_and_monitor(RE, camera_ioc, sensors_ioc):
    from bluesky import plan_stubs as bps
    from bluesky import preprocessors as bpp
    from ophyd_async.core import init_devices

    from atomscale_bluesky.devices.async_devices import (
        GrowthSensorsAsync,
        ImageMode,
        RheedCameraAsync,
    )

    with init_devices():  # after the RunEngine (fixture) exists
        rheed = RheedCameraAsync(camera_ioc.prefix)
        growth = GrowthSensorsAsync(sensors_ioc.prefix)
    docs = []
    frames = 60  # monitored before the camera is stopped (counted, whatever the rate)

    def monitored_counters() -> int:
        streams = {d["uid"]: d["name"] for n, d in docs if n == "descriptor"}
        return sum(
            1
            for n, d in docs
            if n == "event" and streams.get(d["descriptor"]) == "rheed-array_counter_monitor"
        )

    def plan():
        yield from bps.mv(
            rheed.image_mode, ImageMode.CONTINUOUS, rheed.acquire_period_setpoint, 1 / 60
        )
        yield from bps.mv(rheed.acquire, "Acquire")
        for _ in range(1200):  # until enough frames came; a 60 s deadline, not a duration
            if monitored_counters() > frames:
                break
            yield from bps.sleep(0.05)
        yield from bps.mv(rheed.acquire, "Done")
        yield from bps.sleep(0.2)

    RE(
        bpp.monitor_during_wrapper(bpp.run_wrapper(plan()), rheed.monitored + growth.monitored),
        lambda n, d: docs.append((n, d)),
    )
    desc = {d["name"]: d for n, d in docs if n == "descriptor"}
    image_key = desc["rheed-image_monitor"]["data_keys"]["rheed-image"]
    assert image_key["dtype_numpy"] == "|u1" and image_key["shape"] == [640 * 480]
    assert (
        desc["growth-substrate_temperature_monitor"]["data_keys"]["growth-substrate_temperature"][
            "units"
        ]
        == "degC"
    )
    streams = {d["uid"]: d["name"] for n, d in docs if n == "descriptor"}
    events = [d for n, d in docs if n == "event"]
    counters = [
        e["data"]["rheed-array_counter"]
        for e in events
        if streams[e["descriptor"]] == "rheed-array_counter_monitor"
    ][1:]
    images = [e for e in events if streams[e["descriptor"]] == "rheed-image_monitor"][1:]
    assert len(counters) >= frames
    assert counters == list(range(counters[0], counters[0] + len(counters)))
    assert len(images) == len(counters)
    assert images[0]["data"]["rheed-image"].dtype == np.uint8
    counter_ts = [
        e["timestamps"]["rheed-array_counter"]
        for e in events
        if streams[e["descriptor"]] == "rheed-array_counter_monitor"
    ][1:]
    assert [e["timestamps"]["rheed-image"] for e in images] == counter_ts


def test_ioc_launchers_run_as_modules_and_scripts():
    import subprocess
    import sys

    for cmd in (
        [sys.executable, "-m", "iocs.rheed_camera", "--help"],
        [sys.executable, "iocs/growth_sensors.py", "--help"],
    ):
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True)
        assert "--prefix" in out.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "iocs.rheed_camera", "--width", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode != 0 and "frame size" in bad.stderr


def test_monitor_growth_keeps_no_message_history_over_a_long_run(RE):
    """An hours-long growth must not hold every plan message: memory stays flat with duration.

    Driven by a message count, not the clock: the run (an hour long if left alone) is paused once
    it has issued MESSAGES messages and then stopped, which closes it with a stop document.
    """
    import gc

    from bluesky.utils import Msg
    from ophyd import Signal

    messages = 3000
    signal = Signal(name="aux", value=0.0)
    issued = {"n": 0}
    reached = threading.Event()
    alive_at_stop = []

    def count(msg: Msg) -> None:
        issued["n"] += 1
        if issued["n"] == messages:
            reached.set()

    def at_stop(name: str, doc: dict) -> None:
        if name == "stop":
            alive_at_stop.append(sum(isinstance(o, Msg) for o in gc.get_objects()))

    def pause_when_reached() -> None:
        if reached.wait(120):  # pause is requested from outside the RunEngine's own thread
            RE.request_pause()

    RE.subscribe(at_stop, "stop")
    RE.msg_hook = count
    pauser = threading.Thread(target=pause_when_reached, daemon=True)
    pauser.start()
    try:
        with pytest.raises(RunEngineInterrupted):
            RE(monitor_growth(signal, None, 3600.0, acquire=False, step=0.0005))
        assert RE.state == "paused"
        RE.stop()
    finally:
        RE.msg_hook = None
        reached.set()
        pauser.join(5)
    assert issued["n"] >= messages  # the wait issued many checkpoint/sleep messages ...
    assert alive_at_stop and alive_at_stop[0] < 100  # ... and none of them is still held
