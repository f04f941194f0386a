"""``AtomscaleAnalysis`` (ophyd) and ``AtomscaleAnalysisAsync`` read in a RunEngine.

A stream of simulated growth is analysed by the local server; the devices read its latest
result in plans (with a BestEffortCallback and a LiveTable subscribed), the values and the
results' timestamps land in the run's event documents, the stream's id in the configuration.
"""

from __future__ import annotations

import math
import time
from typing import Any

import httpx
import pytest
from bluesky import plans as bp
from bluesky.callbacks import LiveTable
from bluesky.callbacks.best_effort import BestEffortCallback

from atomscale_bluesky.devices.analysis import AtomscaleAnalysis
from atomscale_bluesky.devices.async_analysis import AtomscaleAnalysisAsync
from atomscale_bluesky.server.runner import LocalServer

from .growth_stream import GrowthStreamer

FIELDS = ("specular_intensity", "oscillation_period", "growth_rate", "monolayers")


def _analysed_growth(server: LocalServer, make_client: Any, chunks: int = 5) -> tuple[Any, dict]:
    growth = GrowthStreamer(make_client(server), period_s=1.25)
    for _ in range(chunks):
        growth.push_chunk()
    assert growth.rheed.finalize().ok
    frames = chunks * growth.chunk
    deadline = time.monotonic() + 30
    while True:
        response = httpx.get(
            f"{server.url}/rheed/timeseries/{growth.data_id}/",
            headers={"X-API-KEY": server.api_key},
            params={"last_n": 1},
        )
        if response.status_code == 200 and response.json()["analysis"]["frames_analysed"] == frames:
            return growth, response.json()["series_by_angle"][0]["series"][0]
        assert time.monotonic() < deadline, response.text
        time.sleep(0.05)


def _collect(RE: Any) -> list[tuple[str, dict]]:
    docs: list[tuple[str, dict]] = []
    RE.subscribe(lambda name, doc: docs.append((name, doc)))
    return docs


def test_ophyd_device_in_a_run(RE: Any, local_server: LocalServer, make_client: Any) -> None:
    growth, point = _analysed_growth(local_server, make_client)
    analysis = AtomscaleAnalysis(
        data_id=growth.data_id, endpoint=local_server.url, api_key=local_server.api_key
    )
    docs = _collect(RE)
    bec = BestEffortCallback()
    bec.disable_plots()
    RE.subscribe(bec)
    RE.subscribe(LiveTable([f"analysis_{f}" for f in FIELDS]))
    RE(bp.count([analysis], num=2))
    analysis.stop_polling()
    events = [doc for name, doc in docs if name == "event"]
    assert len(events) == 2
    stamp = point["unix_timestamp_ms"] / 1000.0
    for field in FIELDS:
        key = f"analysis_{field}"
        assert events[-1]["data"][key] == pytest.approx(point[field])
        assert events[-1]["timestamps"][key] == pytest.approx(stamp)
    assert events[-1]["data"]["analysis_frame_number"] == point["frame_number"]
    assert events[-1]["data"]["analysis_result_time"] == pytest.approx(stamp)
    descriptor = next(doc for name, doc in docs if name == "descriptor")
    config = descriptor["configuration"]["analysis"]["data"]
    assert config["analysis_data_id"] == growth.data_id
    assert set(descriptor["hints"]["analysis"]["fields"]) == {f"analysis_{f}" for f in FIELDS}
    assert analysis.latest is not None and analysis.message == ""
    assert abs(analysis.latest.oscillation_period / 1.25 - 1) < 0.02


def test_ophyd_device_says_why_there_is_nothing(RE: Any, local_server: LocalServer) -> None:
    analysis = AtomscaleAnalysis(
        data_id="no-such-stream", endpoint=local_server.url, api_key=local_server.api_key
    )
    docs = _collect(RE)
    RE(bp.count([analysis]))
    analysis.stop_polling()
    event = next(doc for name, doc in docs if name == "event")
    assert math.isnan(event["data"]["analysis_monolayers"])
    assert "no results for stream no-such-stream yet" in analysis.message


def test_ophyd_async_device_in_a_run(RE: Any, local_server: LocalServer, make_client: Any) -> None:
    from ophyd_async.plan_stubs import ensure_connected

    growth, point = _analysed_growth(local_server, make_client, chunks=4)
    analysis = AtomscaleAnalysisAsync(
        data_id=growth.data_id, endpoint=local_server.url, api_key=local_server.api_key,
        name="aanalysis",
    )  # fmt: skip
    docs = _collect(RE)

    def plan() -> Any:
        yield from ensure_connected(analysis)
        yield from bp.count([analysis], num=1)

    RE(plan())
    event = next(doc for name, doc in docs if name == "event")
    stamp = point["unix_timestamp_ms"] / 1000.0
    for field in FIELDS:
        assert event["data"][f"aanalysis-{field}"] == pytest.approx(point[field])
        assert event["timestamps"][f"aanalysis-{field}"] == pytest.approx(stamp)
    descriptor = next(doc for name, doc in docs if name == "descriptor")
    assert descriptor["configuration"]["aanalysis"]["data"]["aanalysis-data_id"] == growth.data_id
