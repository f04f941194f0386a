"""One camera's pixel values to uint8 frames, on the worker, by one scale fixed for the run.

For each delivered type the converter decides once how to read the values (the declared sign,
:mod:`~atomscale_bluesky.callback.pixel_sign`) and which scale maps them to 0..255
(:mod:`~atomscale_bluesky.callback.pixel_scale`): the one declared for that type, else the scale
the camera already has in this run (a value means the same brightness whatever type carries it),
else a guess. For a guess the first frames wait (at most ``SAMPLE_FRAMES`` frames or
``SAMPLE_MAX_BYTES``, or until the run ends) so it sees more than one frame; it is warned once per
camera. Frames holding NaN or infinity are refused (a ``FrameError``: the camera rejects and
counts them). Frames leave in the order they came, each with the payload it was added with.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import numpy as np

from atomscale_bluesky import frames as frame_rule
from atomscale_bluesky.callback.pixel_format import PixelDeclaration
from atomscale_bluesky.callback.pixel_scale import (
    PixelScale,
    SampleStats,
    clipped_frames,
    declared_scale,
    guessed_scale,
)
from atomscale_bluesky.callback.pixel_sign import SignPlan, frames_changed, plan_sign, reinterpret
from atomscale_bluesky.callback.run_report import RunReport
from atomscale_bluesky.callback.summary import PixelSummary

__all__ = ["SAMPLE_FRAMES", "SAMPLE_MAX_BYTES", "PixelConverter"]

SAMPLE_FRAMES = 10  # frames a guessed scale looks at
SAMPLE_MAX_BYTES = 32 * 1024 * 1024  # ... unless they hold more bytes than this

P = TypeVar("P")
Declare = Callable[[], PixelDeclaration]


@dataclass
class _Waiting(Generic[P]):
    stack: np.ndarray  # as read (after the sign plan), frame layout
    payload: P


@dataclass
class _TypePlan:
    """How frames of one delivered type are read and scaled (``scale`` None while sampling)."""

    sign: SignPlan
    scale: PixelScale | None
    stats: SampleStats


class PixelConverter(Generic[P]):
    """Frame stacks of one camera -> uint8 ``(N, H, W)``, decided per delivered type, once."""

    def __init__(self, key: str, report: RunReport) -> None:
        self.key = key
        self._report = report
        self._plans: dict[np.dtype[Any], _TypePlan] = {}
        self._waiting: list[_Waiting[P]] = []
        self._waiting_type: np.dtype[Any] | None = None
        self._run_scale: PixelScale | None = None  # the first scale decided, for later types
        self.summary: PixelSummary | None = None

    def add(self, stack: np.ndarray, payload: P, declare: Declare) -> list[tuple[np.ndarray, P]]:
        """Take a :func:`~atomscale_bluesky.frames.frame_layout` stack; return the frames that
        are ready, converted, in order (those that waited for a guessed scale first)."""
        if stack.dtype.kind not in "buif":
            raise frame_rule.FrameError(f"frames of dtype {stack.dtype} cannot become pixels")
        if stack.dtype.kind == "f" and not np.isfinite(stack).all():
            raise frame_rule.FrameError("frames hold NaN or infinity, which are no pixel values")
        plan = self._plan_for(stack.dtype, declare)
        ready = []
        if self._waiting_type is not None and self._waiting_type != stack.dtype:
            ready += self._release(declare)  # another type arrived: decide from what was seen
        changed = frames_changed(stack, plan.sign)
        if changed and self.summary is not None:
            self.summary.reinterpreted_frames += changed
        read = reinterpret(stack, plan.sign)
        if plan.scale is None:
            self._waiting.append(_Waiting(read, payload))
            self._waiting_type = stack.dtype
            plan.stats.add(read)
            if plan.stats.frames >= SAMPLE_FRAMES or plan.stats.nbytes >= SAMPLE_MAX_BYTES:
                ready += self._release(declare)
            return ready
        ready.append((self._convert(read, plan.scale), payload))
        return ready

    def finish(self, declare: Declare) -> list[tuple[np.ndarray, P]]:
        """The run ended: frames still waiting for a guess are converted by what was seen."""
        return self._release(declare) if self._waiting else []

    # -- decisions --------------------------------------------------------------------------------
    def _plan_for(self, delivered: np.dtype[Any], declare: Declare) -> _TypePlan:
        plan = self._plans.get(delivered)
        if plan is not None:
            return plan
        declared = declare()
        sign = plan_sign(delivered, declared.data_type, declared.data_type_source)
        read_type = sign.read_as or delivered
        scale = declared_scale(read_type, declared) or self._run_scale
        plan = self._plans[delivered] = _TypePlan(sign, scale, SampleStats())
        if self.summary is None:  # the summary tells the decisions for the first type
            self.summary = PixelSummary(source_dtype=delivered.str)
        self._note_sign(sign)
        if plan.scale is not None:
            self._note_scale(delivered, plan)
        return plan

    def _release(self, declare: Declare) -> list[tuple[np.ndarray, P]]:
        """Decide the waiting type's scale (declared by now, else guessed); convert its frames."""
        delivered = self._waiting_type
        assert delivered is not None
        plan = self._plans[delivered]
        read_type = plan.sign.read_as or delivered
        plan.scale = (
            declared_scale(read_type, declare())
            or self._run_scale
            or guessed_scale(read_type, plan.stats)
        )
        self._note_scale(delivered, plan)
        waiting, self._waiting, self._waiting_type = self._waiting, [], None
        return [(self._convert(w.stack, plan.scale), w.payload) for w in waiting]

    def _convert(self, stack: np.ndarray, scale: PixelScale) -> np.ndarray:
        clipped = clipped_frames(stack, scale)
        if clipped and self.summary is not None:
            self.summary.clipped_frames += clipped
            self._report.add(clipped_frames=clipped)
            self._report.warn_once(
                f"pixels-clipped:{self.key}",
                f"{self.key}: values outside the run's pixel scale [{scale.low:g}, "
                f"{scale.high:g}] ({scale.source}) are clipped to 0 or 255 (frames counted)",
            )
        return frame_rule.stack_to_uint8(stack, value_range=scale.value_range)

    # -- what the summary and the log say ---------------------------------------------------------
    def _first_type(self, delivered: np.dtype[Any]) -> PixelSummary | None:
        """The summary, when ``delivered`` is the type it describes."""
        summary = self.summary
        return summary if summary is not None and summary.source_dtype == delivered.str else None

    def _note_sign(self, sign: SignPlan) -> None:
        if sign.read_as is None:
            return
        summary = self._first_type(sign.delivered)
        if summary is not None:
            summary.read_as, summary.read_as_source = sign.read_as.str, sign.source
            summary.read_as_guessed = sign.guessed
        message = f"{self.key}: {sign.delivered} frames are read as {sign.read_as} ({sign.source})"
        if sign.guessed:
            self._report.warn_once(
                f"pixels-sign:{self.key}:{sign.delivered}",
                message + "; declare data_type if they are really signed",
            )
        else:
            self._report.info_once(f"pixels-sign:{self.key}:{sign.delivered}", message)

    def _note_scale(self, delivered: np.dtype[Any], plan: _TypePlan) -> None:
        scale = plan.scale
        assert scale is not None
        if self._run_scale is None:
            self._run_scale = scale
        summary = self._first_type(delivered)
        if summary is not None:
            summary.scale_low, summary.scale_high = scale.low, scale.high
            summary.scale_source, summary.scale_guessed = scale.source, scale.guessed
            summary.bit_depth, summary.bit_depth_source = scale.bit_depth, scale.bit_depth_source
            summary.bit_depth_guessed = scale.guessed and scale.bit_depth is not None
        read_type = plan.sign.read_as or delivered
        if scale.guessed:
            what = f"{scale.bit_depth}-bit" if scale.bit_depth else "a value range"
            hint = (
                "declare bit_depth (or the camera's PixelFormat, e.g. Mono12)"
                if scale.bit_depth
                else "declare pixel_range"
            )
            self._report.warn_once(
                f"pixels-guess:{self.key}:{delivered}",
                f"{self.key}: nothing declares the pixel scale of {read_type} frames; assuming "
                f"{what} [{scale.low:g}, {scale.high:g}], {scale.source}; {hint}",
            )
        else:
            self._report.info_once(
                f"pixels-scale:{self.key}:{delivered}",
                f"{self.key}: {read_type} frames scale [{scale.low:g}, {scale.high:g}] -> "
                f"[0, 255] ({scale.source})",
            )
