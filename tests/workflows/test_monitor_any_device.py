"""``monitor_growth`` with the user's own devices: stock ophyd ``EpicsSignal``s on the simulated
sensor IOC, in a real RunEngine, streamed to the real local server; the camera is left as found."""

from __future__ import annotations

import pytest
from ophyd import Component as Cpt
from ophyd import Device, EpicsSignal, EpicsSignalRO
from plugins.ioc_fixtures import ca_value, ca_write, wait_for

from atomscale_bluesky.callback import AtomscaleCallback
from atomscale_bluesky.plans import monitor_growth
from atomscale_bluesky.plans.monitoring import monitored_signals


class MySensors(Device):
    """A beamline's own sensor device: stock ophyd signals, nothing from this package."""

    temperature = Cpt(EpicsSignalRO, "substrate:Temp_RBV", auto_monitor=True)
    pressure = Cpt(EpicsSignalRO, "chamber:Pressure_RBV", auto_monitor=True)
    setpoint = Cpt(EpicsSignal, "substrate:TempSP", kind="config")


def _stored_channels(server, summary) -> dict[str, int]:
    ts = summary.timeseries
    assert ts is not None and ts.data_id
    channels = server.reader.timeseries(ts.data_id)["channels"]
    return {name: int(ch["count"]) for name, ch in channels.items()}


def test_plain_ophyd_device_is_monitored_and_a_live_camera_keeps_acquiring(
    RE, camera, camera_ioc, sensors_ioc, local_server, make_client
):
    mine = MySensors(sensors_ioc.prefix, name="mine")
    mine.wait_for_connection(timeout=10)
    rotation = EpicsSignalRO(sensors_ioc.prefix + "rotation:RPM_RBV", name="rpm")
    rotation.wait_for_connection(timeout=10)
    assert monitored_signals(mine) == [mine.temperature, mine.pressure]  # read, not config

    ca_write(camera_ioc.pv("cam1:Acquire"), 1)  # an operator's live view is running
    wait_for(lambda: ca_value(camera_ioc.pv("cam1:Acquire_RBV")) == "Acquire", timeout=10)
    callback = AtomscaleCallback(make_client(local_server), progress=False)
    RE.subscribe(callback)
    (uid,) = RE(monitor_growth(camera, mine, 2.0, signals=[rotation], md={"sample": "own"}))
    summary = callback.wait(uid, timeout=120)
    callback.close()

    assert ca_value(camera_ioc.pv("cam1:Acquire_RBV")) == "Acquire"  # left as it was found
    assert summary.errors == 0 and summary.lost == 0, summary.text()
    assert summary.frames > 0
    stored = _stored_channels(local_server, summary)
    assert set(stored) == {"mine_temperature", "mine_pressure", "rpm"}, stored
    assert all(count >= 1 for count in stored.values())
    assert "mine_setpoint" not in stored


def test_a_stopped_camera_is_started_for_the_run_and_stopped_after(RE, camera, camera_ioc):
    assert ca_value(camera_ioc.pv("cam1:Acquire_RBV")) == "Done"
    counts: list[int] = []

    def note(name: str, doc: dict) -> None:
        if name == "event" and "rheed_array_counter" in doc["data"]:
            counts.append(doc["data"]["rheed_array_counter"])

    RE(monitor_growth(camera, None, 1.0), note)
    assert len(set(counts)) >= 2  # the camera acquired new frames during the run ...
    assert ca_value(camera_ioc.pv("cam1:Acquire_RBV")) == "Done"  # ... and is stopped again


def test_something_that_cannot_be_monitored_is_refused_with_a_hint():
    with pytest.raises(ValueError, match=r"signals=\[dev.temperature"):
        monitored_signals(object())


def test_an_ophyd_async_device_gives_the_signals_it_reads(RE):
    from ophyd_async.core import StandardReadable, init_devices, soft_signal_r_and_setter

    class Cell(StandardReadable):
        def __init__(self, name: str = "") -> None:
            with self.add_children_as_readables():
                self.temperature, _ = soft_signal_r_and_setter(float)
                self.flux, _ = soft_signal_r_and_setter(float)
            self.setpoint, _ = soft_signal_r_and_setter(float)  # not read: not monitored
            super().__init__(name=name)

    with init_devices(mock=True):
        cell = Cell()
    assert {s.name for s in monitored_signals(cell)} == {"cell-temperature", "cell-flux"}
