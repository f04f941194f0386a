"""The one rule that turns camera arrays into the uint8 ``(N, H, W)`` frames Atomscale takes.

Atomscale analyses 8-bit grayscale video. Every path that hands frames to the streaming client
(the Bluesky callback, replays, user code) goes through :func:`to_uint8` and
:func:`as_frame_stack`, so a given array always becomes the same bytes. The rule:

* **bool**: ``False -> 0``, ``True -> 255``.
* **unsigned integers** (uint8 ... uint64) are scaled by their *bit depth*: the declared
  ``bit_depth`` when given (a 12-bit camera delivering uint16 declares ``bit_depth=12``, so values
  shift right by 4), otherwise the dtype's full range (uint16 shifts right by 8). A depth above 8
  drops the low bits (``value >> (depth - 8)``); a depth below 8 stretches to the full byte
  (``value * 255 // (2**depth - 1)``). A value that does not fit the declared depth is an error
  (the declaration is wrong, and silently clipping would lose data).
* **signed integers** are usually generic integer arrays (Python lists become int64), so their
  dtype's full range says nothing about the data: they take the declared ``bit_depth`` like
  unsigned ones, and without one they must already lie in ``[0, 255]``. Negative values are an
  error.
* **floats** are judged by the range of the whole array: finite values all in ``[0, 1]`` scale by
  255; otherwise they must lie in ``[0, 255]`` and are taken as they are. Either way values round
  half up to the nearest integer. NaN or infinity is an error, as is anything outside ``[0, 255]``.
* **a fixed value range** ``value_range=(low, high)`` (what the Bluesky callback decides once per
  camera and run) replaces the judgements above: ``low`` becomes 0 and ``high`` 255, values outside
  clip (NaN becomes 0). An integer range ``(0, 2**depth - 1)`` gives the same bytes as
  ``bit_depth=depth``; other integer ranges scale as ``(value - low) * 255 // (high - low)``, float
  ranges as ``(value - low) * 255 / (high - low)`` rounded half up.
* **colour**: a last axis of 3 (RGB) or 4 (RGBA, alpha ignored) becomes luma with the BT.601
  weights ``0.299 R + 0.587 G + 0.114 B``, after each channel went through the rule above.
  A length-1 last axis on a 4-D array is squeezed.

Shapes (:func:`as_frame_stack`, which is :func:`frame_layout` then :func:`stack_to_uint8`):
``(H, W)`` is one frame; ``(N, H, W)`` is a stack; ``(H, W, 3|4)``
is one colour frame and ``(N, H, W, 3|4)`` a colour stack. The ``(N, H, 3)`` ambiguity (a stack of
frames three pixels wide, or one RGB frame) is resolved in favour of colour, because no camera
produces 3- or 4-pixel-wide video; pass ``shape=(H, 3)`` to read such an array as a grayscale
stack. A flat or otherwise reshaped array (Channel Access delivers images as 1-D waveforms) is
reshaped with ``shape=(H, W)`` (or ``(H, W, C)``) when its size is a whole number of frames.
Everything else raises :class:`FrameError`, a ``ValueError`` whose message names the problem.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "FrameError",
    "LUMA_WEIGHTS",
    "ValueRange",
    "as_frame_stack",
    "frame_layout",
    "stack_to_uint8",
    "to_uint8",
]

#: ITU-R BT.601 luma weights for R, G, B.
LUMA_WEIGHTS = (0.299, 0.587, 0.114)

#: ``(low, high)``: the pixel values that become 0 and 255.
ValueRange = tuple[float, float]


class FrameError(ValueError):
    """An array that cannot become uint8 grayscale frames without guessing or losing data."""


def _round_half_up(values: np.ndarray) -> np.ndarray:
    return np.floor(values + 0.5)


def _integer_to_uint8(array: np.ndarray, bit_depth: int | None) -> np.ndarray:
    signed = np.issubdtype(array.dtype, np.signedinteger)
    if array.size and signed and int(array.min()) < 0:
        raise FrameError(
            f"frames of dtype {array.dtype} hold negative values (min {int(array.min())}); "
            "pixel values must be >= 0"
        )
    if bit_depth is None:
        if array.dtype == np.uint8:
            return array
        if signed:
            if array.size and int(array.max()) > 255:
                raise FrameError(
                    f"frames of dtype {array.dtype} hold values up to {int(array.max())}; "
                    "declare the camera's bit_depth (e.g. bit_depth=12) so they can be scaled"
                )
            return array.astype(np.uint8)
        bit_depth = array.dtype.itemsize * 8
    if not 1 <= bit_depth <= 64:
        raise FrameError(f"bit_depth must be between 1 and 64; got {bit_depth}")
    limit = (1 << bit_depth) - 1
    if array.size and int(array.max()) > limit:
        raise FrameError(
            f"frames declared {bit_depth}-bit hold values up to {int(array.max())} "
            f"(a {bit_depth}-bit value is at most {limit}); check bit_depth"
        )
    if bit_depth == 8:
        return array.astype(np.uint8)
    if bit_depth > 8:
        return (array.astype(np.uint64) >> np.uint64(bit_depth - 8)).astype(np.uint8)
    return (array.astype(np.uint16) * 255 // limit).astype(np.uint8)


def _float_to_uint8(array: np.ndarray) -> np.ndarray:
    if array.size == 0:
        return array.astype(np.uint8)
    finite = np.isfinite(array)
    if not finite.all():
        bad = int(np.flatnonzero(~finite.ravel())[0])
        raise FrameError(
            f"frames hold a non-finite value ({float(array.ravel()[bad])} at flat index {bad}); "
            "NaN and infinity cannot become pixels"
        )
    low, high = float(array.min()), float(array.max())
    if low < 0.0 or high > 255.0:
        raise FrameError(
            f"float frames must lie in [0, 1] (scaled by 255) or [0, 255]; got [{low}, {high}]"
        )
    values = array.astype(np.float64)
    if high <= 1.0:
        values = values * 255.0
    return np.minimum(_round_half_up(values), 255.0).astype(np.uint8)


def _checked_range(value_range: Any) -> ValueRange:
    try:
        low, high = (float(v) for v in value_range)
    except (TypeError, ValueError) as exc:
        raise FrameError(f"value_range must be (low, high); got {value_range!r}") from exc
    if not (np.isfinite(low) and np.isfinite(high) and low < high):
        raise FrameError(f"value_range must be finite with low < high; got {value_range!r}")
    return low, high


def _bits_of_range(low: float, high: float) -> int | None:
    """``depth`` when the range is ``(0, 2**depth - 1)`` with depth >= 8, else None."""
    if low != 0 or not high.is_integer():
        return None
    top = int(high) + 1
    depth = top.bit_length() - 1
    return depth if depth >= 8 and top == 1 << depth else None


def _integer_in_range(array: np.ndarray, low: float, high: float) -> np.ndarray:
    depth = _bits_of_range(low, high)
    if depth is not None:
        return _top_bits(array, depth)
    if low.is_integer() and high.is_integer() and high - low < 2**55:
        lo, hi = int(low), int(high)
        if array.dtype == np.uint64:  # values beyond int64 would wrap negative
            array = np.minimum(array, np.uint64(2**62))
        offsets = np.clip(array.astype(np.int64), lo, hi) - lo
        return (offsets * 255 // (hi - lo)).astype(np.uint8)
    scaled = (np.clip(array.astype(np.float64), low, high) - low) * (255.0 / (high - low))
    return np.minimum(np.floor(scaled), 255.0).astype(np.uint8)


def _top_bits(array: np.ndarray, depth: int) -> np.ndarray:
    """The bit-depth rule for a range ``[0, 2**depth - 1]``: clip, keep the top 8 bits."""
    if array.dtype == np.uint8 and depth == 8:
        return array
    if array.dtype.kind == "i":  # negative values clip to 0; the rest fit the unsigned type
        array = np.maximum(array, 0).astype(array.dtype.str.replace("i", "u"))
    top = (1 << depth) - 1
    if top < np.iinfo(array.dtype).max:
        array = np.minimum(array, array.dtype.type(top))
    return (array >> (depth - 8)).astype(np.uint8)


def _float_in_range(array: np.ndarray, low: float, high: float) -> np.ndarray:
    values = np.array(array, dtype=np.float64)  # the one working copy, changed in place
    np.nan_to_num(values, copy=False, nan=low, posinf=high, neginf=low)
    np.clip(values, low, high, out=values)
    values -= low
    values *= 255.0 / (high - low)
    values += 0.5  # round half up
    np.floor(values, out=values)
    np.minimum(values, 255.0, out=values)
    return values.astype(np.uint8)


def _in_range(array: np.ndarray, value_range: ValueRange) -> np.ndarray:
    """Scale by a fixed range: low -> 0, high -> 255, values outside clip (NaN -> 0)."""
    low, high = _checked_range(value_range)
    kind = array.dtype.kind
    if kind in "ui":
        return _integer_in_range(array, low, high)
    if kind == "f":
        return _float_in_range(array, low, high)
    raise FrameError(f"frames of dtype {array.dtype} cannot become uint8 pixels")


def to_uint8(
    array: Any, *, bit_depth: int | None = None, value_range: ValueRange | None = None
) -> np.ndarray:
    """Convert pixel values to uint8 by the module's rule; the shape is kept as given."""
    arr = np.asarray(array)
    if bit_depth is not None and (isinstance(bit_depth, bool) or not isinstance(bit_depth, int)):
        raise FrameError(f"bit_depth must be an int; got {bit_depth!r}")
    kind = arr.dtype.kind
    if kind == "b":
        return np.where(arr, np.uint8(255), np.uint8(0))
    if value_range is not None:
        if bit_depth is not None:
            raise FrameError("give bit_depth or value_range, not both")
        return _in_range(arr, value_range)
    if kind in "ui":
        return _integer_to_uint8(arr, bit_depth)
    if kind == "f":
        if bit_depth is not None:
            raise FrameError("bit_depth applies to integer frames, not floats")
        return _float_to_uint8(arr)
    raise FrameError(f"frames of dtype {arr.dtype} cannot become uint8 pixels")


def _luma(colour: np.ndarray, bit_depth: int | None, value_range: ValueRange | None) -> np.ndarray:
    channels = to_uint8(colour[..., :3], bit_depth=bit_depth, value_range=value_range)
    weights = np.asarray(LUMA_WEIGHTS, dtype=np.float64)
    luma = channels.astype(np.float64) @ weights
    return np.minimum(_round_half_up(luma), 255.0).astype(np.uint8)


def _reshape_flat(arr: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    dims = tuple(int(d) for d in shape)
    if len(dims) not in (2, 3) or any(d <= 0 for d in dims):
        raise FrameError(f"shape must be (H, W) or (H, W, C) with positive sizes; got {shape!r}")
    per_frame = int(np.prod(dims))
    if arr.size == 0 or arr.size % per_frame:
        raise FrameError(
            f"an array of {arr.size} values is not a whole number of {dims} frames "
            f"({per_frame} values each)"
        )
    return arr.reshape((arr.size // per_frame, *dims))


def frame_layout(array: Any, shape: Sequence[int] | None = None) -> np.ndarray:
    """The frames of ``array`` by the module's shape rule, values untouched: ``(N, H, W)``, or
    ``(N, H, W, 3|4)`` for colour (a view of the input where numpy can make one)."""
    arr = np.asarray(array)
    if shape is not None:
        arr = _reshape_flat(arr, shape)
        if arr.ndim == 3:  # (N, H, W) given explicitly: never colour
            return _non_empty(arr)
    if arr.ndim == 4 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):
        arr = arr[np.newaxis]
    if arr.ndim == 2:
        arr = arr[np.newaxis]
    if arr.ndim == 4 and arr.shape[-1] not in (3, 4):
        raise FrameError(
            f"frames of shape {arr.shape}: a 4-D array must be (N, H, W, 3|4) colour frames"
        )
    if arr.ndim not in (3, 4):
        raise FrameError(
            f"frames must be (H,W) or (N,H,W) (or colour (…,3|4)); got shape {arr.shape}; "
            "pass shape=(H, W) to reshape a flat image"
        )
    return _non_empty(arr)


def _non_empty(frames: np.ndarray) -> np.ndarray:
    if 0 in frames.shape[:3]:
        raise FrameError(f"frames must not be empty; got shape {frames.shape[:3]}")
    return frames


def stack_to_uint8(
    frames: np.ndarray, *, bit_depth: int | None = None, value_range: ValueRange | None = None
) -> np.ndarray:
    """C-contiguous uint8 ``(N, H, W)`` from a :func:`frame_layout` stack (colour -> luma)."""
    if frames.ndim == 4:
        return np.ascontiguousarray(_luma(frames, bit_depth, value_range))
    return np.ascontiguousarray(to_uint8(frames, bit_depth=bit_depth, value_range=value_range))


def as_frame_stack(
    array: Any,
    shape: Sequence[int] | None = None,
    *,
    bit_depth: int | None = None,
    value_range: ValueRange | None = None,
) -> np.ndarray:
    """Return C-contiguous uint8 frames ``(N, H, W)`` from any supported shape and dtype."""
    return stack_to_uint8(frame_layout(array, shape), bit_depth=bit_depth, value_range=value_range)
