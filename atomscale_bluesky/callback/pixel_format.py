"""What a camera declares about its pixels: data type, bit depth and value range, with sources.

Declarations come from the descriptor's data key (``dtype_numpy``/``dtype_str``, ``bit_depth``,
display limits), the camera's configuration (an areaDetector ``DataType`` enum, a bit-depth
reading, a GenICam ``PixelFormat`` such as ``Mono12``; matched by key suffix so stock ophyd,
ophyd-async and the simulated camera all work) and the user's options. The data type is the
container the camera fills (``UInt16`` for a 12-bit sensor too), so it declares a bit depth only
when it is exact (8-bit types).
"""

from __future__ import annotations

import fnmatch
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

import numpy as np

__all__ = [
    "AD_DATA_TYPES",
    "PixelDeclaration",
    "PixelOptions",
    "bits_from_pixel_format",
    "configured_pixels",
    "data_key_pixels",
    "data_type_from",
    "first_declared",
]

#: areaDetector ``NDDataType_t`` in enum order, and the numpy type of each.
AD_DATA_TYPES: dict[str, str] = {
    "Int8": "i1",
    "UInt8": "u1",
    "Int16": "i2",
    "UInt16": "u2",
    "Int32": "i4",
    "UInt32": "u4",
    "Int64": "i8",
    "UInt64": "u8",
    "Float32": "f4",
    "Float64": "f8",
}
# enum indices that mean the same type in every ADCore release (64-bit ints came later, at 6, 7)
_STABLE_INDICES = 6

_DATA_TYPE_SUFFIXES = ("datatype",)
_BIT_DEPTH_SUFFIXES = ("bitdepth", "bitdepthimage", "bitsperpixel", "databits", "pixelbits")
_PIXEL_FORMAT_SUFFIXES = ("pixelformat",)
_COLOUR_WIDTHS = {24: 8, 32: 8, 48: 16, 64: 16}  # packed RGB(A) names give bits per pixel
_FORMAT_RE = re.compile(r"^(mono|bayer[a-z]{0,4}|rgba?|bgra?)(\d+)")


@dataclass(frozen=True)
class PixelDeclaration:
    """Pixel facts one source declares; each comes with where it was read (for the summary)."""

    data_type: np.dtype[Any] | None = None
    data_type_source: str | None = None
    bit_depth: int | None = None
    bit_depth_source: str | None = None
    value_range: tuple[float, float] | None = None
    range_source: str | None = None

    def filled_from(self, other: PixelDeclaration) -> PixelDeclaration:
        """This declaration, with ``other``'s facts where this one has none."""
        merged = self
        if merged.data_type is None and other.data_type is not None:
            merged = replace(
                merged, data_type=other.data_type, data_type_source=other.data_type_source
            )
        if merged.bit_depth is None and other.bit_depth is not None:
            merged = replace(
                merged, bit_depth=other.bit_depth, bit_depth_source=other.bit_depth_source
            )
        if merged.value_range is None and other.value_range is not None:
            merged = replace(merged, value_range=other.value_range, range_source=other.range_source)
        return merged

    @property
    def empty(self) -> bool:
        return all(getattr(self, f.name) is None for f in fields(self))


def first_declared(declarations: Iterable[PixelDeclaration | None]) -> PixelDeclaration:
    """One declaration from several, the earlier winning fact by fact."""
    merged = PixelDeclaration()
    for declaration in declarations:
        if declaration is not None:
            merged = merged.filled_from(declaration)
    return merged


# -- reading single values ------------------------------------------------------------------------
def data_type_from(value: Any, enum_strs: Iterable[str] | None = None) -> np.dtype[Any] | None:
    """A numpy dtype from an areaDetector ``DataType`` (name or enum index) or a numpy name."""
    if isinstance(value, (bool, np.bool_)):
        return None
    if isinstance(value, (int, np.integer)):
        names = [str(s) for s in enum_strs] if enum_strs else None
        index = int(value)
        if names is not None and 0 <= index < len(names):
            return data_type_from(names[index])
        if names is None and 0 <= index < _STABLE_INDICES:
            return np.dtype(list(AD_DATA_TYPES.values())[index])
        return None
    if not isinstance(value, str):
        return None
    name = value.strip()
    for ad_name, code in AD_DATA_TYPES.items():
        if name.lower() == ad_name.lower():
            return np.dtype(code)
    try:
        dtype = np.dtype(name)
    except (TypeError, ValueError):
        return None
    return dtype if dtype.kind in "uif" else None


def bits_from_pixel_format(value: Any, enum_strs: Iterable[str] | None = None) -> int | None:
    """Bits per pixel of a GenICam/vendor pixel format: ``Mono12Packed`` -> 12, ``Rgb24`` -> 8."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool) and enum_strs:
        names = [str(s) for s in enum_strs]
        value = names[int(value)] if 0 <= int(value) < len(names) else None
    if not isinstance(value, str):
        return None
    name = value.strip().lower()
    if name.startswith(("yuv", "ycbcr")):
        return 8
    match = _FORMAT_RE.match(name)
    if match is None:
        return None
    bits = int(match.group(2))
    if bits in (8, 10, 12, 14, 16):
        return bits
    return _COLOUR_WIDTHS.get(bits)


def _as_bits(value: Any) -> int | None:
    try:
        bits = int(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return bits if 1 <= bits <= 64 else None


# -- the descriptor's data key --------------------------------------------------------------------
def data_key_pixels(data_key: Mapping[str, Any]) -> PixelDeclaration:
    """What a frame's data key says: its numpy type, a bit-depth field, its display limits."""
    declared = PixelDeclaration()
    for name in ("dtype_numpy", "dtype_str"):
        dtype = data_type_from(data_key.get(name)) if data_key.get(name) else None
        if dtype is not None:
            declared = replace(declared, data_type=dtype, data_type_source=f"data key {name}")
            break
    for name in ("bit_depth", "bits_per_pixel", "data_bits"):
        bits = _as_bits(data_key.get(name))
        if bits is not None:
            declared = replace(declared, bit_depth=bits, bit_depth_source=f"data key {name}")
            break
    limits = _display_limits(data_key)
    if limits is not None:
        declared = replace(declared, value_range=limits, range_source="data key display limits")
    return declared


def _display_limits(data_key: Mapping[str, Any]) -> tuple[float, float] | None:
    limits = data_key.get("limits")
    display = limits.get("display") if isinstance(limits, Mapping) else None
    if not isinstance(display, Mapping):
        return None
    try:
        low, high = float(display.get("low")), float(display.get("high"))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    if math.isfinite(low) and math.isfinite(high) and low < high:
        return (low, high)
    return None


# -- the camera's configuration -------------------------------------------------------------------
def _norm(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower().replace("_rbv", ""))


def _ends_with(key: str, source: Any, suffixes: tuple[str, ...]) -> bool:
    names = [_norm(key)]
    if isinstance(source, str) and source:
        names.append(_norm(source.rsplit(":", 1)[-1]))
    return any(name.endswith(s) for name in names for s in suffixes)


def _readings(conf: Mapping[str, Any], suffixes: tuple[str, ...]) -> list[tuple[str, Any, Any]]:
    """(key, value, enum strings) of configuration readings ending in one of ``suffixes``,
    readbacks (``_RBV``) first."""
    data = conf.get("data", {}) or {}
    keys = conf.get("data_keys", {}) or {}
    found = []
    for key in sorted(data, key=lambda k: (0 if "rbv" in k.lower() else 1, k)):
        dk = keys.get(key) or {}
        if _ends_with(key, dk.get("source"), suffixes):
            found.append((key, data[key], dk.get("enum_strs") or dk.get("choices")))
    return found


def configured_pixels(
    configuration: Mapping[str, Any], object_name: str | None
) -> PixelDeclaration:
    """What ``object_name``'s configuration says: its data type, bit depth and pixel format."""
    conf = configuration.get(object_name) if object_name else None
    if not isinstance(conf, Mapping):
        return PixelDeclaration()
    declared = PixelDeclaration()
    for key, value, enum_strs in _readings(conf, _DATA_TYPE_SUFFIXES):
        dtype = data_type_from(value, enum_strs)
        if dtype is not None:
            source = f"configuration {key}={_label(value, enum_strs)}"
            declared = replace(declared, data_type=dtype, data_type_source=source)
            break
    for key, value, _ in _readings(conf, _BIT_DEPTH_SUFFIXES):
        bits = _as_bits(value)
        if bits is not None:
            declared = replace(
                declared, bit_depth=bits, bit_depth_source=f"configuration {key}={bits}"
            )
            break
    if declared.bit_depth is None:
        for key, value, enum_strs in _readings(conf, _PIXEL_FORMAT_SUFFIXES):
            bits = bits_from_pixel_format(value, enum_strs)
            if bits is not None:
                source = f"configuration {key}={_label(value, enum_strs)}"
                declared = replace(declared, bit_depth=bits, bit_depth_source=source)
                break
    dtype = declared.data_type
    if (
        declared.bit_depth is None
        and dtype is not None
        and dtype.kind in "ui"
        and dtype.itemsize == 1
    ):
        # an 8-bit type is exact; wider integer types are containers (UInt16 holds 12-bit data)
        declared = replace(declared, bit_depth=8, bit_depth_source=declared.data_type_source)
    return declared


def _label(value: Any, enum_strs: Any) -> str:
    if isinstance(value, (int, np.integer)) and enum_strs:
        names = list(enum_strs)
        if 0 <= int(value) < len(names):
            return str(names[int(value)])
    return str(value)


# -- the user's options ---------------------------------------------------------------------------
@dataclass(frozen=True)
class PixelOptions:
    """The user's pixel declarations per data key (exact key or glob): data type and range."""

    data_types: Mapping[str, np.dtype[Any]] = field(default_factory=dict)
    ranges: Mapping[str, tuple[float, float]] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        data_type: str | Mapping[str, str] | None = None,
        pixel_range: tuple[float, float] | Mapping[str, tuple[float, float]] | None = None,
    ) -> PixelOptions:
        types = {"*": data_type} if isinstance(data_type, str) else dict(data_type or {})
        ranges = dict(pixel_range) if isinstance(pixel_range, Mapping) else {}
        if pixel_range is not None and not isinstance(pixel_range, Mapping):
            ranges = {"*": pixel_range}
        return cls(
            data_types={k: _checked_type(k, v) for k, v in types.items()},
            ranges={k: _checked_range(k, v) for k, v in ranges.items()},
        )

    def for_key(self, key: str) -> PixelDeclaration:
        declared = PixelDeclaration()
        dtype = _pick(self.data_types, key)
        if dtype is not None:
            declared = replace(declared, data_type=dtype, data_type_source="option data_type")
        value_range = _pick(self.ranges, key)
        if value_range is not None:
            declared = replace(declared, value_range=value_range, range_source="option pixel_range")
        return declared


def _pick(table: Mapping[str, Any], key: str) -> Any:
    if key in table:
        return table[key]
    for pattern, value in table.items():
        if fnmatch.fnmatchcase(key, pattern):
            return value
    return None


def _checked_type(key: str, value: Any) -> np.dtype[Any]:
    dtype = data_type_from(value)
    if dtype is None:
        raise ValueError(
            f"data_type[{key!r}] must be an areaDetector DataType ({', '.join(AD_DATA_TYPES)}) "
            f"or a numpy integer/float type, not {value!r}"
        )
    return dtype


def _checked_range(key: str, value: Any) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError):
        low = high = math.nan
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise ValueError(f"pixel_range[{key!r}] must be (low, high) with low < high, not {value!r}")
    return (low, high)
