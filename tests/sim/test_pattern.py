"""The RHEED image model and growth model, without any IOC."""

from __future__ import annotations

import numpy as np
import pytest

from atomscale_bluesky.sim.growth import GrowthModel, GrowthParams
from atomscale_bluesky.sim.pattern import FrameInputs, PatternConfig, RheedPattern


def test_frames_have_requested_size_and_type():
    frame = RheedPattern(PatternConfig(320, 200)).render(FrameInputs(1.0, 0.0))
    assert frame.shape == (200, 320) and frame.dtype == np.uint8
    deep = RheedPattern(PatternConfig(64, 48, bit_depth=12)).render(FrameInputs(1.0, 0.0))
    assert deep.dtype == np.uint16 and deep.max() <= 4095 and deep.max() > 255


def test_rheed_features_shadow_edge_specular_and_streaks():
    pattern = RheedPattern(PatternConfig(seed=3))
    frame = pattern.render(FrameInputs(1.0, 0.0)).astype(float)
    rows, cols = pattern.specular_window()
    specular = frame[rows, cols].mean()
    horizon = int(pattern.horizon)
    assert (
        frame[horizon + 20 :, :100].mean() < 0.3 * frame[horizon - 40 : horizon - 10, :100].mean()
    )
    assert specular > 5 * np.median(frame)  # a bright specular spot
    # integer streaks: column profile along the zeroth Laue circle has peaks at +-spacing
    y = int(pattern.horizon - pattern.rods[0].height)
    for rod in pattern.rods:
        if rod.order in (-1.0, 1.0):
            u = int(round(pattern.u0 + rod.order * pattern.spacing))
            y = int(round(pattern.horizon - rod.height))
            assert (
                frame[y - 2 : y + 3, u - 1 : u + 2].mean()
                > 2 * frame[y - 2 : y + 3, u + 12 : u + 15].mean()
            )


def test_specular_spot_saturates_sometimes_but_not_always():
    pattern = RheedPattern(PatternConfig())
    bright = pattern.render(FrameInputs(1.0, 0.0))
    dim = pattern.render(FrameInputs(0.5, 20.0))
    assert (bright == 255).any()
    assert not (dim == 255).any()


def test_seed_makes_frames_reproducible():
    a = RheedPattern(PatternConfig(seed=7)).render(FrameInputs(0.8, 10.0))
    b = RheedPattern(PatternConfig(seed=7)).render(FrameInputs(0.8, 10.0))
    c = RheedPattern(PatternConfig(seed=8)).render(FrameInputs(0.8, 10.0))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("kwargs", [{"width": 0}, {"height": 5}, {"bit_depth": 7}])
def test_invalid_pattern_config_is_refused(kwargs):
    with pytest.raises(ValueError):
        PatternConfig(**kwargs)


def test_growth_oscillates_at_monolayer_period_and_recovers(dominant_frequency):
    model = GrowthModel(GrowthParams(monolayer_period_s=0.7, damping_s=60.0), t0=0.0)
    model.set_shutter(True, 0.0)
    t = np.arange(0.0, 10.0, 1 / 50)
    spec = np.array([model.advance(float(x)).specular for x in t])
    assert dominant_frequency(t, spec, 0.2, 5.0) == pytest.approx(1 / 0.7, rel=0.02)
    model.set_shutter(False, 10.0)
    assert model.advance(60.0).specular > 0.98  # recovered after a long interruption


def test_rotation_modulates_at_symmetry_frequency(dominant_frequency):
    pattern = RheedPattern(PatternConfig(64, 48))
    model = GrowthModel(GrowthParams(rotation_rpm=15.0), t0=0.0)
    t = np.arange(0.0, 8.0, 1 / 120)
    env = np.array([pattern.envelope(model.advance(float(x)).azimuth_deg) for x in t])
    assert dominant_frequency(t, env, 0.3, 3.0) == pytest.approx(4 * 15 / 60, rel=0.02)
