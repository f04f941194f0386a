"""The one pixel scale of a camera's run: which values become 0 and 255, decided once.

A scale comes from what the camera declares (a value range, a bit depth, an 8-bit type) and,
failing that, from the run's first frames: integer data get the smallest usual bit depth their
largest value fits (4095 in uint16 -> 12 bits), float data the usual range their largest value
fits ([0, 1], [0, 255], [0, 2**k - 1]). Either way the scale then stays fixed, so a dark frame
stays dark; values outside it clip and are counted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from atomscale_bluesky.callback.pixel_format import PixelDeclaration

__all__ = [
    "GUESS_DEPTHS",
    "PixelScale",
    "SampleStats",
    "clipped_frames",
    "declared_scale",
    "guess_bit_depth",
    "guess_float_range",
    "guessed_scale",
]

#: bit depths a guess chooses from (cameras deliver 8, 10, 12, 14 or 16 bits; wider types more)
GUESS_DEPTHS = (8, 10, 12, 14, 16, 20, 24, 32, 64)


@dataclass(frozen=True)
class PixelScale:
    """``low`` becomes 0 and ``high`` 255; ``bit_depth`` when the range is ``[0, 2**bits - 1]``."""

    low: float
    high: float
    source: str
    bit_depth: int | None = None
    bit_depth_source: str | None = None
    guessed: bool = False

    @property
    def value_range(self) -> tuple[float, float]:
        return (self.low, self.high)


@dataclass
class SampleStats:
    """The largest finite value and the frames seen, over the run's first frames of one type."""

    frames: int = 0
    nbytes: int = 0
    max_value: float | None = None

    def add(self, stack: np.ndarray) -> None:
        self.frames += len(stack)
        self.nbytes += stack.nbytes
        peak = _finite_max(stack)
        if peak is not None and (self.max_value is None or peak > self.max_value):
            self.max_value = peak


def _finite_max(stack: np.ndarray) -> float | None:
    if stack.size == 0:
        return None
    if stack.dtype.kind == "f":
        finite = stack[np.isfinite(stack)]
        return float(finite.max()) if finite.size else None
    return float(stack.max())


def _bits_range(bits: int) -> tuple[float, float]:
    return (0.0, float((1 << bits) - 1))


def declared_scale(dtype: np.dtype[Any], declared: PixelDeclaration) -> PixelScale | None:
    """The scale the declarations fix for frames of ``dtype``; None when it must be guessed."""
    if dtype.kind == "b":
        return PixelScale(0.0, 1.0, "boolean frames")
    if declared.value_range is not None and (
        dtype.kind == "f" or declared.range_source == "option pixel_range"
    ):
        low, high = declared.value_range
        return PixelScale(low, high, declared.range_source or "declared")
    if dtype.kind == "f":
        return None
    bits = declared.bit_depth
    if bits is not None and 1 <= bits <= dtype.itemsize * 8:
        source = declared.bit_depth_source or "declared"
        return PixelScale(
            *_bits_range(bits), source=source, bit_depth=bits, bit_depth_source=source
        )
    if dtype.kind == "u" and dtype.itemsize == 1:
        return PixelScale(0.0, 255.0, "uint8 frames", 8, "uint8 frames")
    return None


def guess_bit_depth(max_value: float | None, dtype: np.dtype[Any]) -> int:
    """The smallest usual depth holding ``max_value`` (at least 10 for unsigned types wider than
    a byte: no camera fills uint16 with 8-bit data)."""
    width = dtype.itemsize * 8
    floor = 10 if dtype.kind == "u" and dtype.itemsize > 1 else 1
    top = 0 if max_value is None else max(0, math.ceil(max_value))
    for bits in GUESS_DEPTHS:
        if floor <= bits <= width and top < (1 << bits):
            return bits
    return width


def guess_float_range(max_value: float | None) -> tuple[float, float]:
    """[0, 1], [0, 255] or [0, 2**k - 1]: the smallest usual range holding ``max_value``."""
    if max_value is None or max_value <= 1.0:
        return (0.0, 1.0)
    for bits in GUESS_DEPTHS:
        if max_value <= (1 << bits) - 1:
            return _bits_range(bits)
    return (0.0, float(max_value))


def guessed_scale(dtype: np.dtype[Any], stats: SampleStats) -> PixelScale:
    """The scale guessed from the run's first frames of ``dtype``."""
    source = f"guessed from the first {stats.frames} frames (max {_fmt(stats.max_value)})"
    if dtype.kind == "f":
        low, high = guess_float_range(stats.max_value)
        return PixelScale(low, high, source, guessed=True)
    bits = guess_bit_depth(stats.max_value, dtype)
    return PixelScale(
        *_bits_range(bits), source=source, bit_depth=bits, bit_depth_source=source, guessed=True
    )


def clipped_frames(stack: np.ndarray, scale: PixelScale) -> int:
    """Frames of ``stack`` holding a value outside the scale (or NaN/infinity)."""
    if stack.size == 0 or stack.dtype.kind == "b":
        return 0
    if stack.dtype.kind in "ui":
        info = np.iinfo(stack.dtype)
        if info.min >= scale.low and info.max <= scale.high:
            return 0
    inside = (stack >= scale.low) & (stack <= scale.high)
    return int((~inside.reshape(len(stack), -1).all(axis=1)).sum())


def _fmt(value: float | None) -> str:
    if value is None:
        return "none finite"
    return str(int(value)) if float(value).is_integer() else f"{value:.6g}"
