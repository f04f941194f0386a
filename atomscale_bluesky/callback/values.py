"""Read loosely typed document values (numbers, enums, pages of rows) as plain Python numbers."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "as_float",
    "as_int",
    "last_row",
    "non_negative",
    "positive",
    "row",
    "scalar_value",
]


def as_float(value: Any) -> float:
    """``value`` as float, NaN when it is not a number."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def as_int(value: Any) -> int | None:
    """``value`` as int, None when it is not an integer."""
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        return None


def positive(value: Any) -> float | None:
    """A finite positive number, else None."""
    number = as_float(value)
    return number if math.isfinite(number) and number > 0 else None


def non_negative(value: Any) -> float | None:
    """The magnitude of a finite number (a rotation speed has no sign here), else None."""
    number = as_float(value)
    return abs(number) if math.isfinite(number) else None


def row(values: Sequence[Any] | None, i: int) -> Any:
    """Row ``i`` of a page column, None when the column is missing or short."""
    if values is None or i >= len(values):
        return None
    return values[i]


def last_row(values: Sequence[Any] | None) -> Any:
    """The newest row of a page column, None when empty or missing."""
    return values[-1] if values else None


def scalar_value(value: Any, enum_strs: tuple[str, ...] | None) -> float:
    """A channel value as float: bools 0/1, enum strings by their index, NaN when not numeric."""
    if isinstance(value, (bytes, str)):
        text = value.decode(errors="replace") if isinstance(value, bytes) else value
        if enum_strs and text in enum_strs:
            return float(enum_strs.index(text))
        try:
            return float(text)
        except ValueError:
            return math.nan
    if hasattr(value, "value") and not isinstance(value, (int, float, np.generic)):
        value = value.value  # enum members
        if isinstance(value, str):
            return scalar_value(value, enum_strs)
    return as_float(value)
