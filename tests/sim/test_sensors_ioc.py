"""The growth sensors IOC: units, lagging readbacks with their own timestamps, bad writes refused."""

from __future__ import annotations

import pytest
from caproto import ChannelType
from caproto.sync.client import ErrorResponseReceived
from plugins.ioc_fixtures import ca_read, ca_value, ca_write, wait_for


@pytest.fixture
def growth(sensors_ioc):
    yield sensors_ioc
    ca_write(sensors_ioc.pv("substrate:TempSP"), 25.0)
    ca_write(sensors_ioc.pv("rotation:RPM"), 0.0)
    ca_write(sensors_ioc.pv("shutter:As"), 0)


ANALOG = ["substrate:Temp_RBV", "cell:Ga:Temp_RBV", "cell:As:Temp_RBV", "cell:In:Temp_RBV",
          "rotation:RPM_RBV", "rotation:Azimuth_RBV", "chamber:Pressure_RBV", "growth:Rate_RBV",
          "growth:MonolayerPeriod_RBV", "substrate:TempSP", "rotation:RPM", "UpdateRate"]  # fmt: skip


def test_every_analog_pv_has_units_and_precision(growth):
    for suffix in ANALOG:
        md = ca_read(growth.pv(suffix), data_type=ChannelType.CTRL_DOUBLE).metadata
        assert md.units, suffix
        assert md.precision > 0, suffix


def test_readbacks_lag_their_setpoints_and_update_with_fresh_timestamps(growth):
    def temperature():
        return ca_read(growth.pv("substrate:Temp_RBV"), data_type="time")

    first = temperature()
    start, t1 = first.data[0], first.metadata.timestamp
    ca_write(growth.pv("substrate:TempSP"), 600.0)
    # the next readbacks, whenever the IOC publishes them (polled, not slept for)
    updates = []
    assert wait_for(lambda: updates.append(temperature()) or updates[-1].data[0] > start)
    mid, t2 = updates[-1].data[0], updates[-1].metadata.timestamp
    assert start < mid < 600.0  # first-order lag, not a jump
    assert t2 > t1  # each update carries its own fresh timestamp
    ca_write(growth.pv("rotation:RPM"), 30.0)
    assert wait_for(lambda: ca_value(growth.pv("rotation:RPM_RBV")) > 20.0, timeout=10)
    a1 = ca_value(growth.pv("rotation:Azimuth_RBV"))
    assert wait_for(lambda: ca_value(growth.pv("rotation:Azimuth_RBV")) != a1)  # integrates rpm


def test_pressure_reacts_to_the_arsenic_shutter(growth):
    closed = ca_value(growth.pv("chamber:Pressure_RBV"))
    ca_write(growth.pv("shutter:As"), 1)
    assert wait_for(lambda: ca_value(growth.pv("shutter:As_RBV")) == "Open", timeout=3)
    assert wait_for(lambda: ca_value(growth.pv("chamber:Pressure_RBV")) > 10 * closed, timeout=3)


def test_bad_writes_are_refused_and_the_ioc_keeps_serving(growth):
    for suffix, value in (("substrate:TempSP", 5000.0), ("substrate:TempSP", -10.0), ("rotation:RPM", 500.0),
                          ("shutter:Ga", 5), ("UpdateRate", 0.0), ("substrate:TempSP", "hot"),
                          ("substrate:Temp_RBV", 20.0)):  # fmt: skip
        with pytest.raises((ErrorResponseReceived, ValueError, TypeError)):
            ca_write(growth.pv(suffix), value)
    assert ca_value(growth.pv("substrate:TempSP")) == pytest.approx(25.0)
    assert ca_value(growth.pv("UpdateRate_RBV")) == pytest.approx(10.0)
    assert ca_value(growth.pv("shutter:Ga_RBV")) == "Closed"
