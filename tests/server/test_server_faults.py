"""Fault injection: each switch, at start-up and at run time, on protocol endpoints only."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
import pytest
from server_kit import Proto, make_shard, random_frames

from atomscale_bluesky.server.faults import Faults, FaultSwitch
from atomscale_bluesky.server.runner import LocalServer, running_server


def _statuses(server: LocalServer, n: int, path: str = "/physical_samples/") -> list[int | str]:
    out: list[int | str] = []
    with httpx.Client(base_url=server.url, headers={"x-api-key": server.api_key}) as http:
        for _ in range(n):
            try:
                out.append(http.get(path).status_code)
            except httpx.TransportError as exc:
                out.append(type(exc).__name__)
    return out


def test_latency_delays_protocol_not_local(local_server: LocalServer) -> None:
    latency = 5.0
    local_server.faults.set(latency_s=latency)
    sent = threading.Event()
    answered: list[tuple[int, float]] = []

    def delayed() -> None:
        with httpx.Client(
            base_url=local_server.url,
            headers={"x-api-key": local_server.api_key},
            event_hooks={"request": [lambda request: sent.set()]},
            timeout=60,
        ) as http:
            t = time.monotonic()
            status = http.get("/tags/").status_code
            answered.append((status, time.monotonic() - t))

    held = threading.Thread(target=delayed)
    held.start()
    assert sent.wait(30)
    # /local/ is never delayed: asked after the protocol request went out, it answers while that
    # one is still held (ordering: a delayed /local/ request would come back after it)
    assert local_server.reader.faults()["latency_s"] == latency
    assert held.is_alive() and not answered
    held.join(60)
    assert answered and answered[0][0] == 200
    assert answered[0][1] >= latency - 0.1  # the protocol request was delayed (a lower bound)
    local_server.reader.set_faults(latency_s=0.0)


def test_error_fraction_is_statistical_and_seeded(local_server: LocalServer) -> None:
    local_server.reader.set_faults(error_rate=0.3, error_statuses=[500, 503, 429], seed=42)
    first = _statuses(local_server, 300)
    counts = Counter(first)
    errors = counts[500] + counts[503] + counts[429]
    assert 45 <= errors <= 135  # mean 90, sd ~8
    assert counts[500] and counts[503] and counts[429]
    assert counts[200] == 300 - errors
    local_server.reader.set_faults(seed=42)  # setting again re-seeds: the same sequence
    assert _statuses(local_server, 300) == first
    injected = local_server.reader.faults()["injected"]
    assert sum(injected.values()) == 2 * errors
    # an injected error answers JSON, 429/503 with Retry-After, and stores nothing
    local_server.reader.set_faults(error_rate=1.0, error_statuses=[429])
    r = Proto.open(local_server.url, local_server.api_key).post("/tags/", json={"name": "x"})
    assert r.status_code == 429 and r.headers["retry-after"] == "1"
    assert "injected" in r.json()["detail"]
    local_server.reader.clear_faults()
    assert local_server.reader.tags() == []


def test_dropped_connection_is_a_transport_error(local_server: LocalServer) -> None:
    local_server.faults.set(drop_rate=1.0)
    with pytest.raises(httpx.TransportError):
        httpx.get(local_server.url + "/gateway/time")
    proto = Proto.open(local_server.url, local_server.api_key)
    with pytest.raises(httpx.TransportError):
        proto.create_rheed()
    assert local_server.reader.streams() == []  # the dropped request did nothing
    local_server.faults.set(drop_rate=0.5, seed=7)
    results = Counter(isinstance(s, str) for s in _statuses(local_server, 60))
    assert results[True] > 10 and results[False] > 10
    local_server.faults.clear()
    assert set(_statuses(local_server, 5)) == {200}
    assert local_server.reader.health()["internal_errors"] == 0


def test_outage_window_then_recovery(local_server: LocalServer) -> None:
    local_server.reader.set_faults(outage_s=1.5)
    assert local_server.reader.faults()["outage_remaining_s"] > 0
    during = _statuses(local_server, 3)
    assert all(isinstance(s, str) for s in during), during  # dropped, no answer at all
    assert local_server.reader.streams() == []  # /local/ still answers during an outage
    deadline = time.monotonic() + 10
    while _statuses(local_server, 1) != [200]:
        assert time.monotonic() < deadline, "the outage did not end"
        time.sleep(0.1)
    assert local_server.reader.faults()["outage_remaining_s"] == 0


def test_outage_until_switched_off_with_503(local_server: LocalServer) -> None:
    local_server.faults.set(outage=True, outage_mode="503")
    assert set(_statuses(local_server, 4)) == {503}
    local_server.faults.set(outage=False)
    assert set(_statuses(local_server, 4)) == {200}


def test_paths_limit_faults_to_uploads(local_server: LocalServer) -> None:
    local_server.faults.set(error_rate=1.0, error_statuses=[503], paths=["/upload/"])
    proto = Proto.open(local_server.url, local_server.api_key)
    data_id = proto.create_rheed()  # not faulted
    frames = random_frames(2, 3, 3)
    meta = proto.presign_metadata(data_id, (2, 3, 3), 2, 0)
    url = proto.presign(0, meta).json()["url"]
    assert proto.put(url, make_shard(frames)).status_code == 503
    local_server.faults.clear()
    assert proto.put(url, make_shard(frames)).status_code == 200  # the token survived the 503
    np.testing.assert_array_equal(local_server.reader.frames(data_id), frames)


def test_faults_at_start_up(tmp_path: Path) -> None:
    faults = Faults(error_rate=1.0, error_statuses=(502,))
    with running_server(tmp_path / "d", faults=faults) as server:
        assert set(_statuses(server, 3)) == {502}
        assert server.reader.health()["status"] == "ok"
    with running_server(tmp_path / "e", faults={"latency_s": 0.0, "drop_rate": 1.0}) as server:
        assert all(isinstance(s, str) for s in _statuses(server, 2))


def test_fault_switch_validates() -> None:
    switch = FaultSwitch()
    with pytest.raises(ValueError, match="unknown fault switch"):
        switch.set(latency=1)
    with pytest.raises(ValueError, match="error_rate"):
        switch.set(error_rate=1.5)
    with pytest.raises(ValueError, match="4xx or 5xx"):
        switch.set(error_statuses=[302])
    with pytest.raises(ValueError, match="outage_mode"):
        switch.set(outage_mode="418")
    assert switch.current == Faults()
