"""Routing: which data keys of real-looking descriptors become frames, channels or are skipped."""

from __future__ import annotations

import event_model
import pytest

from atomscale_bluesky.callback.routing import (
    CounterKey,
    RoutingOptions,
    RunHints,
    SizeKey,
    pick_counter,
    pick_size,
    route_descriptor,
)


def _descriptor(data_keys, configuration=None, name="primary", object_keys=None):
    run = event_model.compose_run(metadata={"plan_name": "count", "scan_id": 1})
    bundle = run.compose_descriptor(
        name=name,
        data_keys=data_keys,
        configuration=configuration or {},
        object_keys=object_keys or {},
    )
    return bundle.descriptor_doc


def _pyepics_camera_descriptor():
    """What ophyd v1 (pyepics) describes for a raw image waveform and the AD readbacks."""
    data_keys = {
        "cam_image": {
            "source": "PV:RHEED:image1:ArrayData",
            "dtype": "array",
            "shape": [150000],
            "units": "",
            "object_name": "cam",
        },
        "cam_array_counter": {
            "source": "PV:RHEED:cam1:ArrayCounter_RBV",
            "dtype": "integer",
            "shape": [],
            "units": "",
            "object_name": "cam",
        },
        "cam_temperature": {
            "source": "PV:GROWTH:T",
            "dtype": "number",
            "shape": [],
            "units": "K",
            "precision": 3,
            "object_name": "cam",
        },
        "cam_model": {
            "source": "PV:RHEED:cam1:Model_RBV",
            "dtype": "string",
            "shape": [],
            "units": "",
            "object_name": "cam",
        },
        "cam_acquire": {
            "source": "PV:RHEED:cam1:Acquire",
            "dtype": "integer",
            "shape": [],
            "units": "",
            "enum_strs": ["Done", "Acquire"],
            "object_name": "cam",
        },
    }
    conf_keys = {
        "cam_width": {"source": "PV:RHEED:image1:ArraySize0_RBV", "dtype": "integer", "shape": []},
        "cam_height": {"source": "PV:RHEED:image1:ArraySize1_RBV", "dtype": "integer", "shape": []},
        "cam_acquire_period": {
            "source": "PV:RHEED:cam1:AcquirePeriod_RBV",
            "dtype": "number",
            "shape": [],
        },
    }
    configuration = {
        "cam": {
            "data": {"cam_width": 500, "cam_height": 300, "cam_acquire_period": 0.025},
            "timestamps": {k: 1.0 for k in conf_keys},
            "data_keys": conf_keys,
        }
    }
    return _descriptor(data_keys, configuration, object_keys={"cam": list(data_keys)})


def test_flat_pyepics_image_gets_size_fps_and_counter_from_configuration():
    route = route_descriptor(_pyepics_camera_descriptor(), RoutingOptions())
    assert set(route.frames) == {"cam_image"}
    frame = route.frames["cam_image"]
    assert frame.frame_shape == (300, 500)
    assert frame.flat is True
    assert frame.fps == pytest.approx(40.0)
    assert frame.counter_key == "cam_array_counter"
    assert set(route.channels) == {"cam_temperature", "cam_acquire"}  # the counter is no channel
    assert "frame counter" in route.skipped["cam_array_counter"]
    assert route.channels["cam_temperature"].units == "K"
    assert route.channels["cam_acquire"].enum_strs == ("Done", "Acquire")
    assert route.channels["cam_acquire"].units is None  # "" means no units
    assert "cam_model" in route.skipped


def test_include_exclude_and_rename():
    options = RoutingOptions.build(exclude=["*counter*"], rename={"cam_temperature": "substrate_T"})
    route = route_descriptor(_pyepics_camera_descriptor(), options)
    assert "cam_array_counter" not in route.channels
    assert route.skipped["cam_array_counter"] == "excluded by include/exclude"
    assert route.channels["cam_temperature"].name == "substrate_T"
    only = route_descriptor(_pyepics_camera_descriptor(), RoutingOptions.build(include="cam_image"))
    assert set(only.frames) == {"cam_image"} and not only.channels


def test_monitor_descriptor_learns_size_and_fps_from_earlier_descriptor_of_the_run():
    hints = RunHints()
    first = route_descriptor(_pyepics_camera_descriptor(), RoutingOptions(), hints)
    assert not hints.sizes, "routing only reads the hints; the caller absorbs what it learnt"
    hints.absorb(first)
    # a monitor stream of the bare image signal: its configuration is the image itself
    monitor = _descriptor(
        {
            "cam_image": {
                "source": "PV:RHEED:image1:ArrayData",
                "dtype": "array",
                "shape": [150000],
                "object_name": "cam_image",
            }
        },
        configuration={"cam_image": {"data": {}, "timestamps": {}, "data_keys": {}}},
        name="cam_image_monitor",
    )
    route = route_descriptor(monitor, RoutingOptions(), hints)
    assert route.frames["cam_image"].frame_shape == (300, 500)
    assert route.frames["cam_image"].fps == pytest.approx(40.0)


def test_ophyd_async_flat_image_without_size_is_kept_for_later():
    route = route_descriptor(
        _descriptor(
            {
                "eco-image": {
                    "dtype": "array",
                    "shape": [150000],
                    "dtype_numpy": "|u1",
                    "source": "ca://ECO:image1:ArrayData",
                    "units": "",
                }
            }
        ),
        RoutingOptions(),
    )
    frame = route.frames["eco-image"]
    assert frame.frame_shape is None and frame.flat and frame.dtype_numpy == "|u1"


@pytest.mark.parametrize(
    ("shape", "frame_shape", "per_event"),
    [
        ([300, 500], (300, 500), 1),
        ([4, 300, 500], (300, 500), 4),
        ([300, 500, 3], (300, 500), 1),
        ([2, 300, 500, 3], (300, 500), 2),
        ([1, 240, 320], (240, 320), 1),
    ],
)
def test_array_layouts(shape, frame_shape, per_event):
    route = route_descriptor(
        _descriptor({"img": {"dtype": "array", "shape": shape, "source": "sim"}}), RoutingOptions()
    )
    assert route.frames["img"].frame_shape == frame_shape
    assert route.frames["img"].frames_per_event == per_event


@pytest.mark.parametrize(
    "shape",
    [[3, 3], [100], [2, 2, 2, 2, 2], [300, 500, 7, 2]],
)
def test_non_frame_arrays_are_skipped_with_a_reason(shape):
    route = route_descriptor(
        _descriptor({"arr": {"dtype": "array", "shape": shape, "source": "sim"}}), RoutingOptions()
    )
    assert not route.frames
    assert "arr" in route.skipped and route.skipped["arr"]


def test_flat_array_inconsistent_with_camera_size_is_skipped():
    desc = _pyepics_camera_descriptor()
    desc["data_keys"]["cam_image"]["shape"] = [12345]
    route = route_descriptor(desc, RoutingOptions())
    assert "cam_image" in route.skipped and "does not match" in route.skipped["cam_image"]


def test_unknown_shape_is_a_frame_shaped_by_its_data():
    """ophyd's ImagePlugin.shaped_image reports attribute names as its shape."""
    desc = _descriptor({"img": {"dtype": "array", "shape": [300, 500], "source": "sim"}})
    desc["data_keys"]["img"]["shape"] = ["array_size.depth", "array_size.height"]
    route = route_descriptor(desc, RoutingOptions())
    assert route.frames["img"].frame_shape is None


def test_external_keys_and_enum_strings():
    route = route_descriptor(
        _descriptor(
            {
                "det-image": {
                    "dtype": "array",
                    "shape": [1, 64, 80],
                    "dtype_numpy": "|u2",
                    "source": "ca://X",
                    "external": "STREAM:",
                },
                "ad_image": {
                    "dtype": "array",
                    "shape": [64, 80],
                    "source": "PV:X",
                    "external": "FILESTORE:",
                },
                "shutter": {
                    "dtype": "string",
                    "shape": [],
                    "source": "ca://S",
                    "choices": ["Closed", "Open"],
                },
                "flag": {"dtype": "boolean", "shape": [], "source": "sim"},
            }
        ),
        RoutingOptions(),
    )
    assert route.frames["det-image"].external == "STREAM"
    assert route.frames["ad_image"].external == "FILESTORE"
    assert route.channels["shutter"].enum_strs == ("Closed", "Open")
    assert "flag" in route.channels


def test_size_and_period_readings_are_found_for_runtime_learning():
    desc = _descriptor(
        {
            "cam_image": {
                "dtype": "array",
                "shape": [6000],
                "source": "PV:C:image1:ArrayData",
                "object_name": "cam",
            },
            "cam_size_x": {
                "dtype": "integer",
                "shape": [],
                "source": "PV:C:image1:ArraySize0_RBV",
                "object_name": "cam",
            },
            "cam_size_y": {
                "dtype": "integer",
                "shape": [],
                "source": "PV:C:image1:ArraySize1_RBV",
                "object_name": "cam",
            },
            "cam_acquire_period": {
                "dtype": "number",
                "shape": [],
                "source": "PV:C:cam1:AcquirePeriod_RBV",
                "object_name": "cam",
            },
        }
    )
    route = route_descriptor(desc, RoutingOptions())
    assert route.size_readings["cam"] == ("cam_size_x", "cam_size_y")
    assert route.period_readings["cam"] == "cam_acquire_period"
    assert route.frames["cam_image"].frame_shape is None


def _async_monitor(key, source, dtype="integer", shape=None):
    """An ophyd-async monitor stream's descriptor: one signal, its own object."""
    dk = {"dtype": dtype, "shape": shape or [], "source": source, "object_name": key}
    if dtype == "array":
        dk["dtype_numpy"] = "|u1"
    return _descriptor({key: dk}, name=f"{key}_monitor", object_keys={key: [key]})


def test_ophyd_async_size_monitors_are_matched_to_their_camera_by_pv_prefix():
    image = route_descriptor(
        _async_monitor("eco-image", "ca://ECO:image1:ArrayData", "array", [150000]),
        RoutingOptions(),
    ).frames["eco-image"]
    sizes: list[SizeKey] = []
    for key, pv in [
        ("other-width", "ca://OTHER:image1:ArraySize0_RBV"),  # another camera's
        ("other-height", "ca://OTHER:image1:ArraySize1_RBV"),
        ("eco-width", "ca://ECO:image1:ArraySize0_RBV"),
        ("eco-height", "ca://ECO:image1:ArraySize1_RBV"),
    ]:
        route = route_descriptor(_async_monitor(key, pv), RoutingOptions())
        assert key in route.channels  # still a channel as well
        sizes += route.sizes.values()
    assert [(s.key, s.axis) for s in sizes[2:]] == [
        ("eco-width", "width"),
        ("eco-height", "height"),
    ]
    assert pick_size(image, sizes) == (sizes[2], sizes[3])
    assert pick_size(image, sizes[:3]) is None  # no height of this camera yet
    # the scheme ("ca://", "pva://", "PV:") is not part of the IOC prefix
    counters = [
        CounterKey("x-array_counter", "x-array_counter", "ca://OTHER:cam1:ArrayCounter_RBV")
    ]
    assert pick_counter(image, counters) is None


def test_frame_shapes_option_shapes_flat_keys_by_name_or_glob():
    flat = {"dtype": "array", "shape": [1200], "dtype_numpy": "|u1", "source": "ca://T:image1:A"}
    desc = _descriptor({"small-image": flat, "cam2-image": {**flat, "shape": [6000]}})
    route = route_descriptor(desc, RoutingOptions())
    assert "small-image" in route.skipped  # 1200 values: a waveform without a known size
    options = RoutingOptions.build(frame_shapes={"small-image": (30, 40), "cam*": (60, 100)})
    route = route_descriptor(desc, options)
    assert route.frames["small-image"].frame_shape == (30, 40)
    assert route.frames["cam2-image"].frame_shape == (60, 100)
    assert options.frame_shape_for("nothing") is None
    wrong = route_descriptor(desc, RoutingOptions.build(frame_shapes={"cam2-image": (70, 70)}))
    assert "does not match" in wrong.skipped["cam2-image"]


@pytest.mark.parametrize("shape", [(480,), (0, 640), (480.0, 640), "480x640", (480, 640, 3)])
def test_frame_shapes_option_rejects_what_is_not_height_and_width(shape):
    with pytest.raises(ValueError, match="frame_shapes"):
        RoutingOptions.build(frame_shapes={"cam": shape})
