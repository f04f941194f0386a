"""IOC-to-host skew is measured from readings that changed: a setpoint's old, unchanged
timestamp is not skew. Real RunEngine, ophyd devices, the local server."""

from __future__ import annotations

import logging
import time

import pytest
from bluesky.plans import count
from ophyd import Component as Cpt
from ophyd import Device, Signal

from atomscale_bluesky.callback import AtomscaleCallback

from .clock_devices import ioc_clock_camera


class Setpoints(Device):
    """Setpoints written an hour before the run: their readings keep that timestamp."""

    heater = Cpt(Signal, value=650.0, kind="normal")
    shutter = Cpt(Signal, value=1.0, kind="normal")
    valve = Cpt(Signal, value=0.0, kind="normal")


@pytest.mark.parametrize("ioc_offset_s", [0.0, -2.0])
def test_old_unchanged_readings_are_not_skew(local_server, make_client, RE, caplog, ioc_offset_s):
    setpoints = Setpoints(name="set")
    an_hour_ago = time.time() - 3600 + ioc_offset_s
    for signal in (setpoints.heater, setpoints.shutter, setpoints.valve):
        signal.put(signal.get(), timestamp=an_hour_ago)
    cam = ioc_clock_camera(ioc_offset_s)
    callback = AtomscaleCallback(make_client(local_server))
    RE.subscribe(callback)
    n = 12
    RE(count([cam, setpoints], num=n))
    assert callback.flush(60)
    callback.close()
    (summary,) = callback.summaries
    assert summary.errors == 0 and summary.lost == 0, summary.text()
    assert summary.rheed[0].frames == n
    assert summary.ioc_clock_skew_readings == 2 * (n - 1)  # image and temperature, not setpoints
    assert summary.ioc_clock_skew_s == pytest.approx(-ioc_offset_s, abs=0.25)
    warned = [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and "IOC clock" in r.getMessage()
    ]
    if ioc_offset_s == 0.0:
        assert warned == [] and "IOC clock" not in summary.text()
    else:
        assert len(warned) == 1 and "IOC clock 2.0 s behind" in warned[0]
        assert "IOC clock 2.0 s behind the RunEngine host" in summary.text()
