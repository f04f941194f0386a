"""``grow_monolayers`` end to end: simulated IOCs, a RunEngine, the callback streaming to the
local server, live analysis back into the plan through ``AtomscaleAnalysis``.

The camera follows the sensors IOC (the growth shutter and rate), so the plan drives the real
shutter PV and the analysis learns the opening from the run's time series. The simulation's
``sim:LayerMonolayers_RBV`` is the truth the closing is checked against.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import pytest
from plugins.ioc_fixtures import SENSORS_PREFIX, ca_value, ca_write, wait_for

from atomscale_bluesky.callback import AtomscaleCallback
from atomscale_bluesky.devices.analysis import AtomscaleAnalysis
from atomscale_bluesky.plans.growth_control import GrowthDecision, grow_monolayers
from atomscale_bluesky.server.runner import LocalServer, running_server

pytestmark = pytest.mark.slow


def _truth(prefix: str) -> float:
    """Monolayers the simulation grew since the shutter opened, once it has published them."""
    grown = float(ca_value(prefix + "sim:LayerMonolayers_RBV"))
    wait_for(lambda: float(ca_value(prefix + "sim:LayerMonolayers_RBV")) == grown, timeout=1.0)
    wait_for(lambda: False, timeout=0.3)  # the simulation publishes every 0.1 s
    return float(ca_value(prefix + "sim:LayerMonolayers_RBV"))


def _grow(
    RE: Any, camera: Any, sensors: Any, server: LocalServer, make_client: Any, n: float, **kw: Any
) -> tuple[GrowthDecision, list[tuple[str, dict]], AtomscaleCallback]:
    prefix = camera.prefix
    ca_write(SENSORS_PREFIX + "shutter:Ga", 0)
    ca_write(prefix + "sim:FollowSensors", 1)
    assert wait_for(lambda: ca_value(prefix + "sim:ShutterOpen") == "Closed", timeout=5)
    callback = AtomscaleCallback(make_client(server))
    docs: list[tuple[str, dict]] = []
    RE.subscribe(callback)
    RE.subscribe(lambda name, doc: docs.append((name, doc)))
    analysis = AtomscaleAnalysis(callback)
    decisions: list[GrowthDecision] = []
    try:
        RE(
            grow_monolayers(
                n, sensors.shutter_ga_cmd, analysis, camera=camera, sensors=sensors, fps=30.0,
                decisions=decisions, **kw,
            )
        )  # fmt: skip
    finally:
        analysis.stop_polling()
        assert callback.flush(120)
        callback.close()
    assert len(decisions) == 1
    return decisions[0], docs, callback


def test_grow_monolayers_closes_within_a_fifth_of_a_monolayer(
    RE: Any, camera: Any, sensors: Any, local_server: LocalServer, make_client: Any
) -> None:
    decision, docs, callback = _grow(
        RE, camera, sensors, local_server, make_client, 6.0, shutter_lead_s=0.1
    )
    truth = _truth(camera.prefix)
    (summary,) = callback.summaries
    data_id = summary.rheed[0].data_id
    assert decision.source == "analysis", decision
    assert abs(truth - 6.0) <= 0.2, (truth, decision)
    # the simulated rate is 1 ML/s (Ga cell at 900 C); frame times inside a chunk are known only
    # from its first frame and the camera's cadence, which jitters by a few % on a busy machine
    assert abs(decision.rate - 1.0) < 0.05
    # the run's documents show how the plan decided
    descriptors = {d["uid"]: d["name"] for n, d in docs if n == "descriptor"}
    control = [
        d for n, d in docs if n == "event" and descriptors[d["descriptor"]] == "growth_control"
    ]
    assert control[-1]["data"]["growth_control_source"] == "analysis"
    assert control[-1]["data"]["growth_control_note"].startswith("closed: analysis")
    read = [e["data"]["analysis_monolayers"] for e in control]
    assert any(math.isfinite(v) for v in read)  # the analysis recorded next to the estimate
    followed = {
        d["configuration"]["analysis"]["data"]["analysis_data_id"]
        for n, d in docs
        if n == "event_page" or (n == "descriptor" and d["name"] == "growth_control")
    }
    assert followed <= {"", data_id}  # configuration is read when the stream is described
    assert callback.rheed_data_ids(summary.run_uid) == [data_id]
    print(f"grow_monolayers: target 6, simulated truth {truth:.3f}, plan {decision.estimated:.3f}")


def test_no_results_falls_back_to_the_nominal_rate(
    RE: Any,
    camera: Any,
    sensors: Any,
    make_client: Any,
    tmp_path: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with (
        running_server(data_dir=tmp_path / "no-analysis", analysis=False) as server,
        caplog.at_level(logging.WARNING, logger="atomscale_bluesky.plans.growth_control"),
    ):
        decision, docs, _ = _grow(
                RE, camera, sensors, server, make_client, 5.0, nominal_rate=1.0,
                stale_after_s=3.0, shutter_lead_s=0.1,
            )  # fmt: skip
    truth = _truth(camera.prefix)
    assert decision.source == "nominal"
    assert decision.fallback_message is not None
    assert "switched off" in decision.fallback_message
    assert "following the nominal rate 1 monolayers/s" in decision.fallback_message
    assert any("switched off" in r.getMessage() for r in caplog.records)
    assert abs(truth - 5.0) <= 0.25, (truth, decision)
    stop = next(d for n, d in docs if n == "stop")
    assert stop["exit_status"] == "success"


def test_closed_loop_demo_step_reports_the_error(
    RE: Any, camera: Any, sensors: Any, local_server: LocalServer, make_client: Any
) -> None:
    """The function the demo calls: grows to the target and reports the error against the
    simulation's truth (read from ``sim:LayerMonolayers_RBV`` after the close)."""
    from atomscale_bluesky.apps.closed_loop import run_closed_loop

    ca_write(SENSORS_PREFIX + "shutter:Ga", 0)
    callback = AtomscaleCallback(make_client(local_server))
    RE.subscribe(callback)
    try:
        report = run_closed_loop(
            RE, camera, sensors, callback, camera_prefix=camera.prefix, monolayers=5.0,
            nominal_rate=1.0, shutter_lead_s=0.1, fps=30.0,
        )  # fmt: skip
    finally:
        assert callback.flush(120)
        callback.close()
    assert report.decision.source == "analysis"
    assert report.truth == pytest.approx(_truth(camera.prefix))
    assert abs(report.error) <= 0.2 and report.error == report.truth - 5.0
    assert report.data_id == callback.summaries[0].rheed[0].data_id
    text = "\n".join(report.lines())
    assert "target 5 monolayers" in text and "simulated truth" in text
    print(text)
