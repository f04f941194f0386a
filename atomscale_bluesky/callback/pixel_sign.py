"""Integer pixels delivered with the wrong sign are read as the type the camera declared.

Channel Access has no unsigned 16-bit type, so a UInt16 image arrives as int16 and a saturated
65535 pixel as -1. Reading the same bytes as the declared type (a view, no copy) restores it.
Without a declaration, int16 is read as uint16: it is how 16-bit images travel over Channel
Access, and a non-negative int16 value is the same number either way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["SignPlan", "plan_sign", "reinterpret", "frames_changed"]


@dataclass(frozen=True)
class SignPlan:
    """How a delivered integer type is read: the type it becomes and why (None: as delivered)."""

    delivered: np.dtype[Any]
    read_as: np.dtype[Any] | None
    source: str | None
    guessed: bool = False


def _same_width(dtype: np.dtype[Any], kind: str) -> np.dtype[Any]:
    return np.dtype(f"{dtype.byteorder if dtype.byteorder != '=' else ''}{kind}{dtype.itemsize}")


def plan_sign(
    delivered: np.dtype[Any], declared: np.dtype[Any] | None, declared_source: str | None
) -> SignPlan:
    """Read ``delivered`` integers as ``declared`` when only their sign differs; int16 without a
    declaration as uint16."""
    if delivered.kind not in "ui":
        return SignPlan(delivered, None, None)
    if declared is not None and declared.kind in "ui":
        if declared.kind != delivered.kind and declared.itemsize == delivered.itemsize:
            return SignPlan(delivered, _same_width(delivered, declared.kind), declared_source)
        return SignPlan(delivered, None, None)
    if declared is None and delivered.kind == "i" and delivered.itemsize == 2:
        return SignPlan(
            delivered,
            _same_width(delivered, "u"),
            "int16 is how Channel Access delivers 16-bit images",
            guessed=True,
        )
    return SignPlan(delivered, None, None)


def reinterpret(array: np.ndarray, plan: SignPlan) -> np.ndarray:
    """The same bytes as the planned type (a view), or the array itself."""
    if plan.read_as is None or array.dtype != plan.delivered:
        return array
    return array.view(plan.read_as)


def frames_changed(stack: np.ndarray, plan: SignPlan) -> int:
    """How many frames of ``stack`` (as delivered) hold values the reinterpretation changes."""
    if plan.read_as is None or stack.dtype != plan.delivered or stack.size == 0:
        return 0
    # signed read as unsigned: the negative values change; the other way, those above the maximum
    changed = stack < 0 if plan.delivered.kind == "i" else stack > np.iinfo(plan.read_as).max
    return int(changed.reshape(len(stack), -1).any(axis=1).sum())
