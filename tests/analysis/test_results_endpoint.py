"""The official SDK's pollers, unmodified, against the local server's live analysis.

Our client streams simulated growth (frames + the shutter time series) while ``iter_poll`` polls
``GET rheed/timeseries/{id}/``; ``Client.get_rheed_timeseries`` reads the same results with the
SDK's parameters. Period, growth rate and monolayers are checked against the simulation.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
import pytest

from atomscale_bluesky.devices.analysis_results import latest_result, parse_points
from atomscale_bluesky.server.runner import LocalServer, running_server

from .growth_stream import GrowthStreamer

atomscale = pytest.importorskip("atomscale")
polling = pytest.importorskip("atomscale.timeseries.polling")

PERIOD = 1.3


def _wait_analysed(server: LocalServer, data_id: str, frames: int) -> dict[str, Any]:
    """The latest result once ``frames`` frames are analysed (bounded wait on the condition)."""
    deadline = time.monotonic() + 30
    while True:
        response = httpx.get(
            f"{server.url}/rheed/timeseries/{data_id}/",
            headers={"X-API-KEY": server.api_key},
            params={"last_n": 1},
        )
        if response.status_code == 200 and response.json()["analysis"]["frames_analysed"] == frames:
            return response.json()
        assert time.monotonic() < deadline, response.text
        time.sleep(0.05)


def _detected(df: Any) -> bool:
    return (
        not df.empty
        and "Oscillation Period" in df.columns
        and df["Oscillation Period"].notna().any()
        and df["monolayers"].notna().any()
        and float(df["monolayers"].dropna().iloc[-1]) >= 3.0
    )


def test_sdk_poller_follows_the_analysis_while_streaming(
    local_server: LocalServer, make_client: Any
) -> None:
    client = make_client(local_server)
    growth = GrowthStreamer(client, period_s=PERIOD)
    sdk = atomscale.Client(api_key=local_server.api_key, endpoint=local_server.url + "/")
    seen: list[Any] = []
    done = threading.Event()

    def poll() -> None:
        for df in polling.iter_poll(
            sdk, growth.data_id, interval=0.05, last_n=5, until=_detected, max_polls=4000
        ):
            seen.append(df)
        done.set()

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    chunks = 0
    while not done.is_set() and chunks < 40:  # streaming goes on while the SDK polls
        growth.push_chunk()
        chunks += 1
        done.wait(0.05)
    assert done.wait(60), "iter_poll never saw three monolayers"
    last = seen[-1]
    assert list(last.index.names) == ["View ID", "Frame Number"] and len(last) == 5
    period = float(last["Oscillation Period"].dropna().iloc[-1])
    assert abs(period / PERIOD - 1) < 0.02
    assert abs(float(last["growth_rate"].dropna().iloc[-1]) * PERIOD - 1) < 0.02
    row = last.iloc[-1]
    assert abs(row["monolayers"] - growth.truth(row["UNIX Timestamp"] / 1000.0)) < 0.15
    assert 0.0 < row["Specular Intensity"] < 1.0
    assert row["Relative Time"] == pytest.approx(row["UNIX Timestamp"] / 1000 - 1_760_000_001.0)

    # the one-shot reader with the SDK's own parameters
    df = sdk.get_rheed_timeseries(
        growth.data_id, property_names=["specular_intensity", "oscillation_period"], last_n=3
    )
    assert len(df) == 3 and "Specular Intensity" in df and "monolayers" not in df
    df = sdk.get_rheed_timeseries(growth.data_id, include_low_level_features=True, last_n=1)
    assert "spot.row" in df.columns  # low-level features flattened by the SDK
    assert growth.rheed.finalize().ok
    _wait_analysed(local_server, growth.data_id, growth.pushed)
    everything = sdk.get_rheed_timeseries(growth.data_id)
    assert len(everything) == growth.pushed
    recent = sdk.get_rheed_timeseries(growth.data_id, elapsed_seconds=1.0)
    assert 0 < len(recent) <= growth.fps + 1


def test_unknown_stream_and_nothing_analysed_are_no_data(
    local_server: LocalServer, make_client: Any
) -> None:
    sdk = atomscale.Client(api_key=local_server.api_key, endpoint=local_server.url + "/")
    assert sdk.get_rheed_timeseries("no-such-stream").empty
    stream = make_client(local_server).open_rheed_stream(fps=10.0, chunk_size=20)
    response = httpx.get(
        f"{local_server.url}/rheed/timeseries/{stream.data_id}/",
        headers={"X-API-KEY": local_server.api_key},
    )
    assert response.status_code == 404 and response.json()["detail"] == "no data yet"


def test_analysis_switched_off_answers_404_with_the_reason(make_client: Any, tmp_path: Any) -> None:
    with running_server(data_dir=tmp_path / "off", analysis=False) as server:
        growth = GrowthStreamer(make_client(server), period_s=PERIOD)
        growth.push_chunk()
        growth.rheed.finalize()
        assert server.reader.rheed_stream(growth.data_id)["n_frames"] == growth.chunk
        response = httpx.get(
            f"{server.url}/rheed/timeseries/{growth.data_id}/",
            headers={"X-API-KEY": server.api_key},
        )
        assert response.status_code == 404
        assert "switched off" in response.json()["detail"]


def test_cloud_shapes_are_passed_through() -> None:
    """Fields and blocks the local analysis does not produce survive the parser."""
    payload = {
        "series_by_angle": [
            {
                "angle": 45.0,
                "view_id": "v-1",
                "interval_id": 7,
                "series": [
                    {
                        "unix_timestamp_ms": 1_700_000_000_000.0,
                        "frame_number": 3,
                        "specular_intensity": 0.4,
                        "oscillation_period": 2.0,
                        "referenced_strain": 0.012,
                        "cluster_id": 2,
                        "low_level_features": {"a": {"b": 1}},
                    },
                    {"unix_timestamp_ms": 1_700_000_001_000.0, "frame_number": 4},
                ],
            }
        ]
    }
    points = parse_points(payload)
    assert len(points) == 2
    first = points[0]
    assert first.extra["referenced_strain"] == 0.012 and first.extra["cluster_id"] == 2
    assert first.extra["low_level_features"] == {"a": {"b": 1}}
    assert first.extra["block.view_id"] == "v-1" and first.extra["block.interval_id"] == 7
    assert first.angle == 45.0 and first.rate == 0.5  # one monolayer per period
    latest = latest_result(points)
    assert latest is not None and latest.frame_number == 4 and latest.time == 1_700_000_001.0
    assert parse_points({"unexpected": True}) == [] and parse_points(None) == []


def test_every_frame_analysed_in_order(local_server: LocalServer, make_client: Any) -> None:
    """Chunks acknowledged by the store are analysed afterwards by the worker, every frame."""
    growth = GrowthStreamer(make_client(local_server), period_s=PERIOD)
    for _ in range(3):
        growth.push_chunk()
    report = growth.rheed.finalize()
    assert report.ok
    result = _wait_analysed(local_server, growth.data_id, 150)
    assert result["series_by_angle"][0]["series"][0]["frame_number"] == 149
