"""Nested lists from bluesky-nats's msgpack become arrays of the descriptor's dtype."""

from __future__ import annotations

import msgpack
import numpy as np

from atomscale_bluesky.apps.buses.nats_bus import decode_message
from atomscale_bluesky.apps.buses.nested_arrays import NestedArrays, as_array


def wire(doc: dict) -> dict:
    """The document as bluesky-nats sends it (arrays as nested lists) and the consumer reads it."""
    payload = msgpack.packb(doc, default=lambda a: a.tolist())
    return decode_message("events.bus.x", payload)[1]


def descriptor(uid: str, dtype: str, shape: list[int]) -> dict:
    keys = {
        "cam_image": {"dtype": "array", "dtype_numpy": dtype, "shape": shape, "source": "s"},
        "cam_count": {"dtype": "integer", "shape": [], "source": "s"},
        "cam_files": {"dtype": "array", "dtype_numpy": dtype, "shape": shape, "external": "FS:"},
    }
    return {"uid": uid, "run_start": "r", "data_keys": keys}


def test_events_and_pages_become_arrays_of_the_declared_dtype():
    rng = np.random.default_rng(3)
    frame = rng.integers(0, 256, (48, 64), dtype=np.uint8)
    deep = rng.integers(0, 4096, (2, 48, 64), dtype=np.uint16)
    arrays = NestedArrays()
    arrays("descriptor", wire(descriptor("d8", "|u1", [48, 64])))
    arrays("descriptor", wire(descriptor("d16", "<u2", [48, 64])))
    event = arrays(
        "event", wire({"descriptor": "d8", "data": {"cam_image": frame, "cam_count": 3}})
    )
    assert event["data"]["cam_image"].dtype == np.uint8
    np.testing.assert_array_equal(event["data"]["cam_image"], frame)
    assert event["data"]["cam_count"] == 3
    flat = arrays("event", wire({"descriptor": "d8", "data": {"cam_image": frame.ravel()}}))
    np.testing.assert_array_equal(flat["data"]["cam_image"], frame.ravel())
    page = arrays("event_page", wire({"descriptor": "d16", "data": {"cam_image": deep}}))
    assert [a.dtype for a in page["data"]["cam_image"]] == [np.uint16, np.uint16]
    np.testing.assert_array_equal(np.stack(page["data"]["cam_image"]), deep)
    external = arrays("event", wire({"descriptor": "d8", "data": {"cam_files": "datum-1"}}))
    assert external["data"]["cam_files"] == "datum-1"


def test_values_that_do_not_fit_the_fast_path_are_left_to_numpy_or_as_they_are():
    ragged, too_large = [[1, 2, 3], [4, 5]], [[1, 300], [2, 3]]
    np.testing.assert_array_equal(as_array([[1, 2], [3, 4]], np.dtype("<i4")), [[1, 2], [3, 4]])
    arrays = NestedArrays()
    arrays("descriptor", descriptor("d", "|u1", [2, 3]))
    for value in (ragged, too_large):  # not an array of that dtype: handed on as it came
        event = arrays("event", {"descriptor": "d", "data": {"cam_image": value}})
        assert event["data"]["cam_image"] == value
    unknown = arrays("event", {"descriptor": "other", "data": {"cam_image": [[1, 2]]}})
    assert unknown["data"]["cam_image"] == [[1, 2]]
