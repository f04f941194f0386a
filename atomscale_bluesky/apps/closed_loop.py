"""The closed-loop demo step: grow 10 monolayers under live analysis, compare with the simulation.

``run_closed_loop(RE, camera, sensors, callback, camera_prefix=...)`` makes the simulated camera
follow the sensors IOC (shutter and growth rate), runs ``grow_monolayers`` with an
``AtomscaleAnalysis`` reading the results of the stream the callback opens, then reads the
simulation's truth (``sim:LayerMonolayers_RBV``: monolayers grown since the shutter opened) and
reports the error. The RunEngine must already have ``callback`` subscribed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from atomscale_bluesky.plans.growth_control import GrowthDecision, grow_monolayers

__all__ = ["ClosedLoopReport", "run_closed_loop"]


@dataclass(frozen=True)
class ClosedLoopReport:
    """What the closed loop aimed for, what it decided and what the simulation grew."""

    target: float
    decision: GrowthDecision
    truth: float  # monolayers the simulation grew between opening and closing
    data_id: str

    @property
    def error(self) -> float:
        """Grown minus target, in monolayers."""
        return self.truth - self.target

    def lines(self) -> list[str]:
        d = self.decision
        return [
            f"closed loop: target {self.target:g} monolayers, shutter closed by {d.source} "
            f"({d.reason})",
            f"simulated truth {self.truth:.3f} monolayers: error {self.error:+.3f} monolayers",
        ] + ([f"fallback: {d.fallback_message}"] if d.fallback_message else [])


def run_closed_loop(
    RE: Any,
    camera: Any,
    sensors: Any,
    callback: Any,
    *,
    camera_prefix: str,
    monolayers: float = 10.0,
    nominal_rate: float | None = 1.0,
    shutter_lead_s: float = 0.05,
    fps: float | None = None,
    md: dict[str, Any] | None = None,
) -> ClosedLoopReport:
    """Run the closed-loop growth (see the module docstring) and report the error."""
    from ophyd import EpicsSignal, EpicsSignalRO

    from atomscale_bluesky.devices.analysis import AtomscaleAnalysis

    follow = EpicsSignal(camera_prefix + "sim:FollowSensors", name="follow_sensors")
    truth = EpicsSignalRO(camera_prefix + "sim:LayerMonolayers_RBV", name="layer_monolayers")
    for signal in (follow, truth):
        signal.wait_for_connection(timeout=10)
    follow.put(1, wait=True)
    analysis = AtomscaleAnalysis(callback, name="analysis")
    decisions: list[GrowthDecision] = []
    try:
        RE(
            grow_monolayers(
                monolayers, sensors.shutter_ga_cmd, analysis, nominal_rate=nominal_rate,
                shutter_lead_s=shutter_lead_s, camera=camera, sensors=sensors, fps=fps, md=md,
                decisions=decisions,
            )
        )  # fmt: skip
    finally:
        analysis.stop_polling()
    if not decisions:
        raise RuntimeError("grow_monolayers ended without closing the shutter on a decision")
    decision = decisions[-1]
    time.sleep(0.3)  # the simulation publishes its state every 0.1 s
    grown = float(truth.get(use_monitor=False))
    return ClosedLoopReport(monolayers, decision, grown, analysis.data_id.get())
