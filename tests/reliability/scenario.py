"""Scenario pieces shared by the end-to-end reliability tests: a monitored run
with the callback, and read-backs of what the server stored."""

from __future__ import annotations

import time
from typing import Any

from plugins.ioc_fixtures import ca_value

from atomscale_bluesky.callback import AtomscaleCallback
from atomscale_bluesky.plans import monitor_growth

from .conftest import SMALL, EventFrames, Figures, stored_hashes


def ioc_counter(camera: Any) -> int:
    return int(ca_value(camera.prefix + "cam1:ArrayCounter_RBV"))


def run_scenario(
    RE: Any,
    camera: Any,
    sensors: Any,
    callback: AtomscaleCallback,
    *,
    duration: float,
    fps: float,
    scenario: str,
    until: Any = None,
    run_until: Any = None,
) -> tuple[Figures, Any, float, EventFrames]:
    """Run monitor_growth with the callback; the figures, the run summary and the plan wall time.

    With ``until`` (and the ``run_until`` fixture), the run goes on until ``until(events)`` holds
    and is then stopped; ``duration`` is only a deadline.
    """
    events = EventFrames()
    RE.subscribe(callback)
    RE.subscribe(events)
    before = ioc_counter(camera)
    t0 = time.monotonic()
    plan = monitor_growth(
        camera, sensors, duration, fps=fps, md={"sample": f"reliability {scenario}"}
    )
    if until is None:
        RE(plan)
    else:
        assert run_until(plan, lambda: until(events), timeout=duration), (
            f"{scenario}: never got there"
        )
    wall = time.monotonic() - t0
    sent = ioc_counter(camera) - before
    assert callback.flush(300), "the callback did not finish within 300 s"
    (summary,) = callback.summaries
    figures = Figures(scenario, sent=sent, delivered=len(events.hashes_in_time_order()))
    figures.stale = sum(r.stale for r in summary.rheed)
    return figures, summary, wall, events


def expected_frames(events: EventFrames, figures: Figures) -> list[str]:
    """The delivered frames the server must hold: all but the stale pre-run value (the earliest)."""
    return events.hashes_in_time_order()[figures.stale :]


def stored_rheed(server: Any, summary: Any) -> tuple[list[str], Any]:
    (rheed,) = [r for r in summary.rheed if r.frame_shape == SMALL]
    return stored_hashes(server.reader, rheed.data_id), rheed


def assert_points_complete(server: Any, summary: Any) -> int:
    """Every sensor point the callback batched is on the server; returns the total."""
    ts = summary.timeseries
    assert ts is not None and ts.data_id and ts.not_sent == 0
    stored = server.reader.timeseries(ts.data_id)["channels"]
    for name, channel in ts.channels.items():
        assert stored[name]["count"] == channel.points, name
    return sum(c.points for c in ts.channels.values())
