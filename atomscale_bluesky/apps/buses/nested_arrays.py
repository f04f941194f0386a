"""Arrays that arrive as nested lists (bluesky-nats's msgpack), turned into numpy arrays with the
dtype their descriptor declares, which is much faster than numpy inferring it element by element
(8-bit frames go through ``bytes``, one C call per row)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["NestedArrays", "as_array"]

logger = logging.getLogger(__name__)

MAX_DESCRIPTORS = 10_000


def as_array(value: Any, dtype: np.dtype) -> Any:
    """``value`` (a list, or nested lists, of numbers) as an array of ``dtype``; other values
    unchanged."""
    if not isinstance(value, list) or not value:
        return value
    if dtype == np.uint8:
        try:
            return _uint8(value)
        except (TypeError, ValueError):
            pass  # not rectangular, or a value outside 0..255: numpy says what it is
    return np.asarray(value, dtype=dtype)


def _uint8(value: list[Any]) -> np.ndarray:
    if not isinstance(value[0], list):
        return np.frombuffer(bytearray(value), dtype=np.uint8)
    if isinstance(value[0][0], list):  # (N, H, W) and deeper
        return np.stack([_uint8(item) for item in value])
    width = len(value[0])
    flat = bytearray(b"".join(bytes(row) for row in value))
    if len(flat) != width * len(value):
        raise ValueError("rows of different lengths")
    return np.frombuffer(flat, dtype=np.uint8).reshape(len(value), width)


class NestedArrays:
    """Learns the array data keys' dtypes from descriptors; converts events' and event pages'
    nested lists of those keys in place."""

    def __init__(self) -> None:
        self._types: dict[str, dict[str, np.dtype]] = {}

    def __call__(self, name: str, doc: dict[str, Any]) -> dict[str, Any]:
        if name == "descriptor":
            self._learn(doc)
        elif name in ("event", "event_page"):
            types = self._types.get(str(doc.get("descriptor")))
            data = doc.get("data")
            if types and isinstance(data, dict):
                page = name == "event_page"
                for key, dtype in types.items():
                    if key in data:
                        data[key] = self._convert(data[key], dtype, page)
        return doc

    @staticmethod
    def _convert(value: Any, dtype: np.dtype, page: bool) -> Any:
        try:
            if page and isinstance(value, list):
                return [as_array(item, dtype) for item in value]
            return as_array(value, dtype)
        except (TypeError, ValueError, OverflowError) as exc:
            logger.debug("left as lists (%s)", exc)
            return value

    def _learn(self, doc: Mapping[str, Any]) -> None:
        keys = doc.get("data_keys")
        if not isinstance(keys, Mapping) or doc.get("uid") is None:
            return
        types: dict[str, np.dtype] = {}
        for key, spec in keys.items():
            if not isinstance(spec, Mapping) or spec.get("dtype") != "array":
                continue
            declared = spec.get("dtype_numpy")
            if spec.get("external") or not isinstance(declared, str) or not declared:
                continue
            try:
                dtype = np.dtype(declared)
            except TypeError:
                continue
            if dtype.kind in "uif":
                types[str(key)] = dtype
        if types:
            if len(self._types) >= MAX_DESCRIPTORS:
                self._types.pop(next(iter(self._types)))
            self._types[str(doc["uid"])] = types
