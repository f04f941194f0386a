"""The pure pieces of the pixel path: declarations, sign reinterpretation, the fixed scale and the
range rule of :mod:`atomscale_bluesky.frames`."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from atomscale_bluesky import frames as frame_rule
from atomscale_bluesky.callback.pixel_format import (
    AD_DATA_TYPES,
    PixelDeclaration,
    PixelOptions,
    bits_from_pixel_format,
    configured_pixels,
    data_key_pixels,
    data_type_from,
    first_declared,
)
from atomscale_bluesky.callback.pixel_scale import (
    PixelScale,
    SampleStats,
    clipped_frames,
    declared_scale,
    guess_bit_depth,
    guess_float_range,
    guessed_scale,
)
from atomscale_bluesky.callback.pixel_sign import frames_changed, plan_sign, reinterpret
from atomscale_bluesky.callback.summary import PixelSummary

# -- declarations ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "enum_strs", "expected"),
    [
        ("UInt16", None, "u2"),
        ("uint16", None, "u2"),
        ("Float32", None, "f4"),
        (3, None, "u2"),  # an enum index in areaDetector's order
        (1, ["Int8", "UInt8", "Int16", "UInt16"], "u1"),
        (9, list(AD_DATA_TYPES), "f8"),
        (9, None, None),  # index 6+ moved when ADCore added 64-bit ints: needs the enum strings
        ("<i2", None, "i2"),
        ("Mono12", None, None),
        (True, None, None),
    ],
)
def test_data_type_from_areadetector_and_numpy_names(value, enum_strs, expected):
    dtype = data_type_from(value, enum_strs)
    assert (dtype.str[1:] if dtype is not None else None) == expected


@pytest.mark.parametrize(
    ("name", "bits"),
    [
        ("Mono8", 8),
        ("Mono10", 10),
        ("Mono12", 12),
        ("Mono12Packed", 12),
        ("Mono12p", 12),
        ("Mono14", 14),
        ("Mono16", 16),
        ("BayerRG12", 12),
        ("RGB8Packed", 8),
        ("Rgb24", 8),
        ("Rgb48", 16),
        ("YUV422Packed", 8),
        ("Coord3D_C16", None),
        ("", None),
    ],
)
def test_bits_from_pixel_formats_of_genicam_and_vendor_cameras(name, bits):
    assert bits_from_pixel_format(name) == bits


def test_pixel_format_enum_index_is_read_through_its_strings():
    assert bits_from_pixel_format(1, ["Mono8", "Mono12Packed", "Mono16"]) == 12


def _config(**readings):
    return {
        "det": {
            "data": {k: v for k, (v, _) in readings.items()},
            "timestamps": {k: 0.0 for k in readings},
            "data_keys": {k: dk for k, (_, dk) in readings.items()},
        }
    }


def test_configuration_is_read_by_suffix_as_stock_ophyd_names_it():
    config = _config(
        det_cam_data_type=(3, {"source": "PV:XF:cam1:DataType_RBV", "dtype": "integer"}),
        det_cam_pixel_format=(
            "Mono12Packed",
            {"source": "PV:XF:cam1:PixelFormat_RBV", "dtype": "string"},
        ),
    )
    declared = configured_pixels(config, "det")
    assert declared.data_type == np.dtype("u2")
    assert declared.data_type_source == "configuration det_cam_data_type=3"
    assert declared.bit_depth == 12
    assert declared.bit_depth_source == "configuration det_cam_pixel_format=Mono12Packed"


def test_a_wide_data_type_is_a_container_an_8_bit_one_a_depth():
    wide = configured_pixels(_config(c_data_type=("UInt16", {"source": "SIM:x"})), "det")
    assert wide.data_type == np.dtype("u2") and wide.bit_depth is None
    narrow = configured_pixels(_config(c_data_type=("UInt8", {"source": "SIM:x"})), "det")
    assert narrow.bit_depth == 8


def test_a_bit_depth_reading_wins_over_the_pixel_format():
    config = _config(
        cam_bit_depth=(10, {"source": "PV:X:cam1:BitDepth"}),
        cam_pixel_format=("Mono16", {"source": "PV:X:cam1:PixelFormat"}),
    )
    assert configured_pixels(config, "det").bit_depth == 10


def test_data_key_declares_type_depth_and_display_limits():
    declared = data_key_pixels(
        {
            "dtype_numpy": "<u2",
            "bit_depth": 12,
            "limits": {"display": {"low": 0.0, "high": 2.5}},
        }
    )
    assert declared.data_type == np.dtype("<u2") and declared.bit_depth == 12
    assert declared.value_range == (0.0, 2.5)
    assert data_key_pixels({"dtype_str": "uint16"}).data_type == np.dtype("u2")
    assert data_key_pixels({"limits": {"display": {"low": 0, "high": 0}}}).value_range is None


def test_first_declared_wins_fact_by_fact():
    user = PixelDeclaration(value_range=(0, 10), range_source="option")
    config = PixelDeclaration(data_type=np.dtype("u2"), data_type_source="config")
    key = PixelDeclaration(data_type=np.dtype("i2"), data_type_source="key", bit_depth=12)
    merged = first_declared([user, None, config, key])
    assert merged.value_range == (0, 10) and merged.data_type == np.dtype("u2")
    assert merged.bit_depth == 12


def test_options_by_key_or_glob_and_checked():
    options = PixelOptions.build({"cam*": "UInt16"}, (0.0, 2.0))
    assert options.for_key("cam_image").data_type == np.dtype("u2")
    assert options.for_key("other").data_type is None
    assert options.for_key("other").value_range == (0.0, 2.0)
    with pytest.raises(ValueError, match="data_type"):
        PixelOptions.build("Mono12")
    with pytest.raises(ValueError, match="pixel_range"):
        PixelOptions.build(pixel_range=(5, 1))


# -- sign -----------------------------------------------------------------------------------------


def test_int16_declared_unsigned_is_a_view_and_counts_changed_frames():
    u16 = np.array([[[0, 65535]], [[1, 2]]], dtype=np.uint16)
    delivered = u16.view(np.int16)
    plan = plan_sign(delivered.dtype, np.dtype("<u2"), "configuration")
    read = reinterpret(delivered, plan)
    assert read.dtype == np.uint16 and np.shares_memory(read, delivered)
    np.testing.assert_array_equal(read, u16)
    assert frames_changed(delivered, plan) == 1 and not plan.guessed


def test_int16_without_declaration_is_read_unsigned_as_a_guess():
    plan = plan_sign(np.dtype("<i2"), None, None)
    assert plan.read_as == np.dtype("<u2") and plan.guessed


@pytest.mark.parametrize(
    ("delivered", "declared"),
    [("<i2", "<i2"), ("<u2", "<u2"), ("<i4", None), ("<f4", "<u2"), ("<i2", "<u4")],
)
def test_no_reinterpretation_unless_only_the_sign_differs(delivered, declared):
    plan = plan_sign(np.dtype(delivered), np.dtype(declared) if declared else None, "x")
    assert plan.read_as is None


# -- scale ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("max_value", "dtype", "bits"),
    [(4095, "u2", 12), (4096, "u2", 14), (1023, "u2", 10), (200, "u2", 10), (65535, "u2", 16)],
)
def test_guessed_bit_depth_is_the_smallest_usual_one(max_value, dtype, bits):
    assert guess_bit_depth(max_value, np.dtype(dtype)) == bits


def test_guessed_float_ranges():
    assert guess_float_range(0.9) == (0.0, 1.0)
    assert guess_float_range(200.0) == (0.0, 255.0)
    assert guess_float_range(4000.5) == (0.0, 4095.0)
    assert guess_float_range(None) == (0.0, 1.0)


def test_declared_scale_needs_a_depth_for_wide_integers_and_a_range_for_floats():
    none = PixelDeclaration()
    assert declared_scale(np.dtype("u2"), none) is None
    assert declared_scale(np.dtype("f4"), none) is None
    assert declared_scale(np.dtype("u1"), none) == PixelScale(
        0, 255, "uint8 frames", 8, "uint8 frames"
    )
    twelve = PixelDeclaration(bit_depth=12, bit_depth_source="format")
    assert declared_scale(np.dtype("u2"), twelve).value_range == (0.0, 4095.0)
    assert declared_scale(np.dtype("u1"), twelve).value_range == (0.0, 255.0)  # too deep: dtype
    limits = PixelDeclaration(value_range=(0.0, 2.0), range_source="data key display limits")
    assert declared_scale(np.dtype("f4"), limits).value_range == (0.0, 2.0)
    assert declared_scale(np.dtype("u2"), limits) is None  # limits of integer images say little


def test_guessed_scale_names_what_it_saw():
    stats = SampleStats()
    stats.add(np.full((10, 4, 4), 4095, np.uint16))
    scale = guessed_scale(np.dtype("u2"), stats)
    assert scale.bit_depth == 12 and scale.guessed
    assert scale.source == "guessed from the first 10 frames (max 4095)"


def test_clipped_frames_counts_frames_outside_or_not_finite():
    scale = PixelScale(0.0, 1.0, "x")
    stack = np.array([[[0.5]], [[1.5]], [[np.nan]], [[-0.1]], [[1.0]]])
    assert clipped_frames(stack, scale) == 3
    assert clipped_frames(np.zeros((3, 2, 2), np.uint8), PixelScale(0, 255, "x")) == 0


def test_range_rule_matches_the_bit_depth_rule_and_clips():
    values = np.array([0, 15, 16, 4095, 5000], np.uint16)
    np.testing.assert_array_equal(
        frame_rule.to_uint8(values, value_range=(0, 4095)), [0, 0, 1, 255, 255]
    )
    np.testing.assert_array_equal(
        frame_rule.to_uint8(np.array([-3, 0, 3, 7], np.int64), value_range=(0, 7)),
        [0, 0, 109, 255],
    )
    np.testing.assert_array_equal(
        frame_rule.to_uint8(np.array([np.nan, -1, 0.5, 2.4, 2.5, 300.0]), value_range=(0, 255)),
        [0, 0, 1, 2, 3, 255],
    )


def test_summary_notes_show_fallbacks_only():
    declared = PixelSummary("<u2", bit_depth=12, scale_low=0, scale_high=4095, scale_source="f")
    assert declared.notes() == []
    guessed = PixelSummary(
        "<i2",
        read_as="<u2",
        read_as_source="int16 is how Channel Access delivers 16-bit images",
        read_as_guessed=True,
        reinterpreted_frames=2,
        bit_depth=12,
        bit_depth_source="guessed from the first 10 frames (max 4095)",
        bit_depth_guessed=True,
        scale_low=0,
        scale_high=4095,
        scale_guessed=True,
        clipped_frames=1,
    )
    text = "; ".join(guessed.notes())
    assert "<i2 read as <u2 (assumed" in text and "2 frames changed" in text
    assert "12-bit guessed from the first 10 frames (max 4095) (scale [0, 4095])" in text
    assert "1 frame clipped to [0, 4095]" in text


# -- properties -----------------------------------------------------------------------------------

_INT_TYPES = st.sampled_from([np.uint8, np.uint16, np.int16, np.int32, np.uint32])


@settings(max_examples=60, deadline=None)
@given(data=st.data(), dtype=_INT_TYPES)
def test_integer_scale_is_monotonic_and_the_same_for_every_frame(data, dtype):
    info = np.iinfo(dtype)
    low = data.draw(st.integers(max(info.min, -1000), min(info.max - 1, 60000)))
    high = data.draw(st.integers(low + 1, min(info.max, low + 70000)))
    frames = data.draw(
        hnp.arrays(
            dtype,
            st.tuples(st.integers(1, 4), st.just(3), st.just(5)),
            elements=st.integers(info.min, info.max),
        )
    )
    out = frame_rule.stack_to_uint8(frames, value_range=(low, high))
    flat_in, flat_out = frames.ravel().astype(np.int64), out.ravel()
    order = np.argsort(flat_in, kind="stable")
    assert np.all(np.diff(flat_out[order].astype(int)) >= 0)  # monotonic
    for i in range(len(frames)):  # a frame converts the same alone or among others
        np.testing.assert_array_equal(
            frame_rule.stack_to_uint8(frames[i : i + 1], value_range=(low, high))[0], out[i]
        )
    assert np.all(out[frames <= low] == 0) and np.all(out[frames >= high] == 255)


@settings(max_examples=60, deadline=None)
@given(
    data=st.data(),
    dtype=st.sampled_from([np.float32, np.float64]),
    low=st.floats(-1e3, 1e3),
    width=st.floats(1e-3, 1e5),
)
def test_float_scale_is_monotonic_and_the_same_for_every_frame(data, dtype, low, width):
    high = low + width
    frames = data.draw(hnp.arrays(dtype, (3, 4, 4), elements=st.floats(-2e5, 2e5, width=32)))
    out = frame_rule.stack_to_uint8(frames, value_range=(low, high))
    order = np.argsort(frames.ravel().astype(np.float64), kind="stable")
    assert np.all(np.diff(out.ravel()[order].astype(int)) >= 0)
    dark = np.full((1, 4, 4), low)  # the scale's low converts to 0 whatever the frames hold
    assert not frame_rule.stack_to_uint8(dark, value_range=(low, high)).any()
    for i in range(len(frames)):
        np.testing.assert_array_equal(
            frame_rule.stack_to_uint8(frames[i : i + 1], value_range=(low, high))[0], out[i]
        )


@settings(max_examples=60, deadline=None)
@given(values=hnp.arrays(np.uint16, (2, 4, 4)), declared=st.sampled_from(["<u2", "<i2", None]))
def test_reinterpretation_never_copies_and_round_trips(values, declared):
    delivered = values.view(np.int16)
    plan = plan_sign(delivered.dtype, np.dtype(declared) if declared else None, "x")
    read = reinterpret(delivered, plan)
    assert np.shares_memory(read, delivered)
    if plan.read_as is not None:
        np.testing.assert_array_equal(read, values)
        assert frames_changed(delivered, plan) == int((values >= 32768).any(axis=(1, 2)).sum())


@settings(max_examples=40, deadline=None)
@given(
    data=st.data(),
    dtype=st.sampled_from([np.uint16, np.int16, np.float32, np.float64]),
    splits=st.lists(st.integers(1, 4), min_size=1, max_size=8),
)
def test_converter_uses_one_scale_for_the_whole_run(data, dtype, splits):
    """Whatever the readings' sizes, every frame converts by the same scale, so a brighter
    pixel anywhere in the run is never stored darker than a dimmer one."""
    from atomscale_bluesky.callback.counters import LockedCounters
    from atomscale_bluesky.callback.pixel_converter import PixelConverter
    from atomscale_bluesky.callback.run_report import FailureLatch, RunReport

    if np.dtype(dtype).kind == "f":
        elements = st.floats(0, 300, width=32)
    else:
        elements = st.integers(0, np.iinfo(dtype).max)
    readings = [data.draw(hnp.arrays(dtype, (n, 2, 3), elements=elements)) for n in splits]
    report = RunReport("0" * 32, LockedCounters(), FailureLatch(), strict=False)
    converter: PixelConverter[int] = PixelConverter("cam", report)
    out: list[tuple[np.ndarray, int]] = []
    for i, reading in enumerate(readings):
        out += converter.add(reading, i, PixelDeclaration)
    out += converter.finish(PixelDeclaration)
    assert [i for _, i in out] == list(range(len(readings)))  # in order, each once
    summary = converter.summary
    assert summary is not None and summary.scale_guessed
    scale = (summary.scale_low, summary.scale_high)
    for (stack, _), reading in zip(out, readings, strict=True):
        read = reading.view(np.uint16) if reading.dtype == np.int16 else reading
        np.testing.assert_array_equal(stack, frame_rule.stack_to_uint8(read, value_range=scale))
    values = np.concatenate(
        [
            (r.view(np.uint16) if r.dtype == np.int16 else r).ravel().astype(np.float64)
            for r in readings
        ]
    )
    stored = np.concatenate([s.ravel() for s, _ in out]).astype(int)
    order = np.argsort(values, kind="stable")
    assert np.all(np.diff(stored[order]) >= 0)


def test_layout_keeps_values_and_colour_goes_through_the_range_per_channel():
    flat = np.arange(2 * 8 * 10, dtype=np.uint16)
    stack = frame_rule.frame_layout(flat, (8, 10))
    assert stack.shape == (2, 8, 10) and stack.dtype == np.uint16 and np.shares_memory(stack, flat)
    rgb = np.zeros((8, 10, 3), np.uint16)
    rgb[..., 1] = 4095  # full-scale green only
    out = frame_rule.stack_to_uint8(frame_rule.frame_layout(rgb), value_range=(0, 4095))
    assert out.shape == (1, 8, 10) and np.all(out == 150)  # 0.587 * 255 rounded
    with pytest.raises(frame_rule.FrameError, match="empty"):
        frame_rule.frame_layout(np.zeros((0, 8, 10)))


def _converter():
    from atomscale_bluesky.callback.counters import LockedCounters
    from atomscale_bluesky.callback.pixel_converter import PixelConverter
    from atomscale_bluesky.callback.run_report import FailureLatch, RunReport

    report = RunReport("1" * 32, LockedCounters(), FailureLatch(), strict=False)
    return PixelConverter("cam", report), report


def test_a_later_type_keeps_the_runs_scale_unless_it_declares_its_own():
    converter, report = _converter()
    (first,) = converter.add(np.full((1, 2, 2), 200, np.uint8), 0, PixelDeclaration)
    assert first[0].tolist() == [[[200, 200], [200, 200]]]
    (same,) = converter.add(np.array([[[100.4, 300.0]]]), 1, PixelDeclaration)  # floats, [0, 255]
    assert same[0].tolist() == [[[100, 255]]] and report.counts().clipped_frames == 1
    twelve = PixelDeclaration(bit_depth=12, bit_depth_source="option bit_depth")
    (own,) = converter.add(np.array([[[4095, 16]]], np.uint16), 2, lambda: twelve)
    assert own[0].tolist() == [[[255, 1]]]
    assert converter.summary.source_dtype == "|u1" and converter.summary.clipped_frames == 1


def test_frames_holding_nan_are_refused():
    converter, _ = _converter()
    with pytest.raises(frame_rule.FrameError, match="NaN"):
        converter.add(np.array([[[0.5, np.nan]]]), 0, PixelDeclaration)
