"""Growth physics seen through the device: specular oscillations and rotation modulation."""

from __future__ import annotations

import numpy as np
import pytest
from plugins.ioc_fixtures import ca_value, ca_write

from atomscale_bluesky.plans import monitor_growth
from atomscale_bluesky.sim.pattern import PatternConfig, RheedPattern


def specular_series(run_until, camera, frames: int, fps: float) -> tuple[np.ndarray, np.ndarray]:
    """Monitor the camera until ``frames`` frames came; (capture times, specular sum) per frame."""
    rows, cols = specular_window_640x480()
    times: list[float] = []
    values: list[float] = []

    def collect(name, doc):
        if name == "event" and "rheed_image" in doc["data"]:
            times.append(doc["timestamps"]["rheed_image"])
            values.append(float(doc["data"]["rheed_image"][rows, cols].sum()))

    assert run_until(
        monitor_growth(camera, None, 600.0, fps=fps), lambda: len(times) > frames, collect
    )
    return np.asarray(times[1:]), np.asarray(values[1:])


@pytest.fixture
def own_sim(camera_ioc):
    """The camera's ``sim:`` PVs as this test writes them: not mirroring the sensors IOC (whose
    rotation, shutter and growth rate other tests may have left set) until the test ends."""
    pv = camera_ioc.pv("sim:FollowSensors")
    before = 1 if ca_value(pv) == "On" else 0
    ca_write(pv, 0)
    try:
        yield camera_ioc
    finally:
        ca_write(pv, before)


def specular_window_640x480() -> tuple[slice, slice]:
    """Where the IOC's 640x480 pattern puts the specular spot (same model, same geometry)."""
    return RheedPattern(PatternConfig(640, 480)).specular_window()


def test_specular_oscillation_period_matches_the_ioc(
    run_until, camera, own_sim, dominant_frequency
):
    camera_ioc = own_sim
    period = 0.45
    ca_write(camera_ioc.pv("sim:MonolayerPeriod"), period)
    ca_write(camera_ioc.pv("sim:Damping"), 500.0)
    ca_write(camera_ioc.pv("sim:ShutterOpen"), 1)
    t, x = specular_series(run_until, camera, 240, 40.0)  # 6 s of frames, 13 periods
    ca_write(camera_ioc.pv("sim:ShutterOpen"), 0)
    assert len(t) >= 240
    found = dominant_frequency(t, x, 0.3, 8.0)
    assert 1.0 / found == pytest.approx(period, rel=0.05)
    assert x.max() > 1.3 * x.min()  # a visible oscillation, not noise


def test_rotation_modulates_at_rpm_times_symmetry(
    run_until, camera, own_sim, fundamental_frequency
):
    """A high-symmetry azimuth passes the beam rpm/60 x 4 times a second: a train of short
    pulses, so the repetition rate is found from all its harmonics, not the strongest one. The
    search starts above half that rate: with frames lost on a loaded machine, every other pulse
    can come out weaker, and half the rate then holds two of the four harmonics too."""
    camera_ioc = own_sim
    rpm = 10.0
    ca_write(camera_ioc.pv("sim:RotationRPM"), rpm)
    t, x = specular_series(run_until, camera, 360, 60.0)  # 6 s of frames, 4 modulation periods
    ca_write(camera_ioc.pv("sim:RotationRPM"), 0.0)
    assert len(t) >= 360
    found = fundamental_frequency(t, x, 0.5, 3.0)
    assert found == pytest.approx(4 * rpm / 60.0, rel=0.05)
