"""Closed-loop growth: open the shutter, follow Atomscale's live analysis, close at n monolayers.

``grow_monolayers`` opens the growth shutter, then every ``poll_s`` triggers the
``AtomscaleAnalysis`` device and estimates the monolayers grown now: the latest result's count
plus its growth rate times the time since that frame (the results lag the camera by a chunk).
It closes the shutter at the moment the estimate reaches ``n`` (minus ``shutter_lead_s``). When
no fresh result arrives (analysis off, stream down, ``stale_after_s`` without a new one) it
follows ``nominal_rate`` from the last good result (or from the opening) and says so once; at
``timeout`` s after the opening it closes regardless. Every estimate is recorded in the run's
``growth_control`` stream (``growth_control_monolayers``, ``_rate``, ``_source``, ``_note``), next
to the analysis signals, so the run documents show how the plan decided.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
from ophyd import Component as Cpt
from ophyd import Device, Signal

from atomscale_bluesky.plans.monitoring import monitored_run, monitored_signals, run_metadata
from atomscale_bluesky.plans.stubs import Plan

__all__ = ["GrowthControlRecord", "GrowthDecision", "grow_monolayers"]

log = logging.getLogger(__name__)

STREAM = "growth_control"


@dataclass(frozen=True)
class GrowthDecision:
    """How and when the shutter was closed."""

    target: float
    estimated: float  # monolayers the plan estimated at the close (NaN if it had no estimate)
    source: str  # "analysis", "nominal" or "timeout"
    reason: str
    opened_at: float  # Unix s
    closed_at: float
    rate: float  # monolayers/s used for the last estimate (NaN if none)
    last_result_time: float | None  # Unix s of the last analysis result used
    fallback_message: str | None  # why the plan left the analysis, if it did


class GrowthControlRecord(Device):
    """The plan's estimate at each step, read into the ``growth_control`` stream."""

    monolayers = Cpt(Signal, value=math.nan, kind="hinted")
    target = Cpt(Signal, value=math.nan, kind="normal")
    rate = Cpt(Signal, value=math.nan, kind="normal")
    source = Cpt(Signal, value="", kind="normal")
    note = Cpt(Signal, value="", kind="normal")


@dataclass
class _Follower:
    """The estimate from analysis results, falling back to a nominal rate (plain state, no I/O)."""

    target: float
    opened: float
    nominal_rate: float | None
    stale_after_s: float
    last_good: tuple[float, float, float] | None = None  # (result time, monolayers, rate)
    fallback: str | None = None

    def estimate(self, result: Any, message: str, now: float) -> tuple[float, float, str]:
        """(monolayers now, rate, source); NaN when nothing is known yet."""
        if result is not None and result.time >= self.opened - 1.0:
            rate = result.rate
            count = result.monolayers
            if not math.isfinite(count) and math.isfinite(rate):
                count = rate * (result.time - self.opened)
            fresh = now - result.time <= self.stale_after_s
            if math.isfinite(count) and math.isfinite(rate) and rate > 0 and fresh:
                self.last_good = (result.time, count, rate)
                self.fallback = None
                return count + rate * (now - result.time), rate, "analysis"
        if self.nominal_rate is None:
            return math.nan, math.nan, "waiting"
        if now - self.opened > self.stale_after_s:
            since = "" if self.last_good is None else " since its last result"
            text = (
                f"no fresh Atomscale analysis result for {self.stale_after_s:g} s "
                f"({message or 'results stopped'}); following the nominal rate "
                f"{self.nominal_rate:g} monolayers/s{since}"
            )
            if text != self.fallback:
                log.warning("grow_monolayers: %s", text)
                self.fallback = text
        if self.last_good is not None:
            t, count, _ = self.last_good
            return count + self.nominal_rate * (now - t), self.nominal_rate, "nominal"
        return self.nominal_rate * (now - self.opened), self.nominal_rate, "nominal"


def _record(record: GrowthControlRecord, analysis: Any, **values: Any) -> Plan:
    for key, value in values.items():
        getattr(record, key).put(value)
    yield from bps.create(STREAM)
    yield from bps.read(analysis)
    yield from bps.read(record)
    yield from bps.save()


def _follow(
    n: float,
    shutter: Any,
    analysis: Any,
    record: GrowthControlRecord,
    *,
    nominal_rate: float | None,
    timeout: float,
    stale_after_s: float,
    poll_s: float,
    open_value: Any,
    closed_value: Any,
    shutter_lead_s: float,
) -> Plan:
    yield from bps.mv(shutter, open_value)
    opened = time.time()
    follower = _Follower(n, opened, nominal_rate, stale_after_s)
    source, estimate, rate, reason = "timeout", math.nan, math.nan, ""
    while True:
        yield from bps.checkpoint()
        yield from bps.trigger(analysis, wait=True)
        now = time.time()
        estimate, rate, source = follower.estimate(analysis.latest, analysis.message, now)
        note = follower.fallback or ""
        yield from _record(
            record, analysis, monolayers=estimate, target=n, rate=rate, source=source, note=note
        )
        if now - opened >= timeout:
            source = "timeout"
            reason = f"timeout: {timeout:g} s after the shutter opened"
            break
        if math.isfinite(estimate) and rate > 0:
            # recording took time: the estimate moves on at the rate; the next step may come
            # late on a busy machine, so close from this one when the target is near
            estimate += rate * (time.time() - now)
            remaining = (n - estimate) / rate - shutter_lead_s
            if remaining <= 2 * poll_s:
                if remaining > 0:
                    yield from bps.sleep(remaining)
                estimate += rate * max(remaining, 0.0)
                reason = (
                    f"{source}: {estimate:.3f} monolayers estimated at {rate:.4g} monolayers/s"
                    f" (target {n:g})"
                )
                break
        yield from bps.sleep(poll_s)
    yield from bps.mv(shutter, closed_value)
    closed = time.time()
    yield from _record(
        record, analysis, monolayers=estimate, target=n, rate=rate, source=source,
        note=f"closed: {reason}" + (f"; {follower.fallback}" if follower.fallback else ""),
    )  # fmt: skip
    last = follower.last_good[0] if follower.last_good else None
    return GrowthDecision(
        n, estimate, source, reason, opened, closed, rate, last, follower.fallback
    )


def grow_monolayers(
    n: float,
    shutter: Any,
    analysis: Any,
    *,
    nominal_rate: float | None = None,
    timeout: float | None = None,
    stale_after_s: float = 8.0,
    poll_s: float = 0.2,
    open_value: Any = 1,
    closed_value: Any = 0,
    shutter_lead_s: float = 0.0,
    camera: Any = None,
    sensors: Any = None,
    fps: float | None = None,
    open_run: bool = True,
    md: dict[str, Any] | None = None,
    decisions: list[GrowthDecision] | None = None,
) -> Plan:
    """Grow ``n`` monolayers under live analysis; returns a :class:`GrowthDecision`.

    ``shutter`` is a settable (``open_value``/``closed_value``); ``analysis`` an
    ``AtomscaleAnalysis``. With ``camera`` (and ``sensors``) the run also monitors them and
    acquires frames, as ``monitor_growth`` does; ``open_run=False`` runs inside the caller's run.
    ``timeout`` defaults to three times the nominal growth time (or 600 s without a nominal rate).
    The decision is also appended to ``decisions`` (for a RunEngine that returns run uids).
    """
    if not n > 0:
        raise ValueError(f"n must be a positive number of monolayers, got {n}")
    if timeout is None:
        timeout = 3.0 * n / nominal_rate + 10.0 if nominal_rate else 600.0
    record = GrowthControlRecord(name="growth_control")
    decision: list[GrowthDecision] = [] if decisions is None else decisions

    def body() -> Plan:
        decision.append(
            (
                yield from _follow(
                    n, shutter, analysis, record, nominal_rate=nominal_rate, timeout=timeout,
                    stale_after_s=stale_after_s, poll_s=poll_s, open_value=open_value,
                    closed_value=closed_value, shutter_lead_s=shutter_lead_s,
                )
            )
        )  # fmt: skip

    def close_shutter() -> Plan:
        yield from bps.mv(shutter, closed_value)

    plan = bpp.stage_wrapper(bpp.finalize_wrapper(body(), close_shutter()), [analysis])
    devices = [d for d in (camera, sensors, analysis) if d is not None]
    run_md = run_metadata(
        "grow_monolayers",
        devices,
        md,
        plan_args={"n": n, "nominal_rate": nominal_rate, "timeout": timeout, "poll_s": poll_s},
        growth_target_monolayers=n,
    )
    if camera is not None:
        signals = monitored_signals(camera, sensors)
        yield from monitored_run(camera, signals, plan, md=run_md, acquire=True, fps=fps)
    elif open_run:
        yield from bpp.run_wrapper(plan, md=run_md)
    else:
        yield from plan
    return decision[-1] if decision else None
