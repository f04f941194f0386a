"""X-API-KEY: every protected endpoint answers 401 without a valid key and changes nothing."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest
from server_kit import Proto, make_shard, random_frames

from atomscale_bluesky.server.runner import LocalServer, running_server

ID = "00000000-0000-0000-0000-000000000001"
PROTECTED: list[tuple[str, str, Any]] = [
    ("GET", "/physical_samples/", None),
    ("POST", "/physical_samples/", {"name": "x"}),
    ("GET", "/tags/", None),
    ("POST", "/tags/", {"name": "x"}),
    ("POST", "/tags/data-items/", {"data_ids": [ID], "tag_ids": [ID]}),
    ("POST", "/data_entries/physical_sample", {"data_ids": [ID], "physical_sample_id": ID}),
    ("POST", f"/projects/{ID}/configuration/tracking_samples", {"physical_sample_id": ID}),
    (
        "POST",
        "/rheed/stream/",
        {
            "data_item_name": "x",
            "rotational_period": None,
            "rotations_per_min": 0.0,
            "fps_capture_rate": 1.0,
        },
    ),  # fmt: skip
    ("POST", "{rheed}/end", None),
    (
        "POST",
        "/data_entries/raw_data/staged/upload_urls/?original_filename=frames.zarr%2Fframes"
        "%2Fc%2F0%2F0%2F0&num_parts=1&staging_type=stream",
        {"data_id": "{rheed}"},
    ),  # fmt: skip
    ("POST", "/tool-state/stream/initialize", {"stream_name": "x", "points_per_chunk": 5}),
    (
        "POST",
        "/tool-state/stream/chunk",
        {
            "data_id": "{ts}",
            "chunk_index": 0,
            "channel_name": "a",
            "timestamps": [1.0],
            "values": [1.0],
        },
    ),  # fmt: skip
    (
        "POST",
        "/tool-state/stream/chunk/multi",
        {"data_id": "{ts}", "chunk_index": 0, "channels": {}},
    ),
    ("POST", "/tool-state/stream/{ts}/finalize", None),
    ("GET", "/tool-state/{ts}/timeseries/", None),
    ("GET", "/rheed/timeseries/{rheed}/", None),
    ("GET", "/similarity/rheed/{rheed}/trajectory/", None),
    ("GET", "/local/health", None),
    ("GET", "/local/streams", None),
    ("GET", "/local/rheed/{rheed}", None),
    ("GET", "/local/rheed/{rheed}/frames", None),
    ("GET", "/local/rheed/{rheed}/chunks", None),
    ("GET", "/local/timeseries/{ts}", None),
    ("GET", "/local/timeseries/{ts}/points?channel=a", None),
    ("GET", "/local/samples", None),
    ("GET", "/local/tags", None),
    ("GET", "/local/projects", None),
    ("GET", "/local/faults", None),
    ("PUT", "/local/faults", {"latency_s": 5.0}),
    ("DELETE", "/local/faults", None),
]


def _fill(value: Any, ids: dict[str, str]) -> Any:
    if isinstance(value, str):
        return value.replace("{rheed}", ids["rheed"]).replace("{ts}", ids["ts"])
    if isinstance(value, dict):
        return {k: _fill(v, ids) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, ids) for v in value]
    return value


def _state(server: LocalServer) -> Any:
    reader = server.reader
    return (reader.streams(), reader.samples(), reader.tags(), reader.projects(), reader.faults())


def test_every_protected_endpoint_refuses_missing_and_wrong_keys(local_server: LocalServer) -> None:
    proto = Proto.open(local_server.url, local_server.api_key)
    rheed = proto.create_rheed()
    ids = {"rheed": "/rheed/stream/" + rheed, "ts": proto.create_timeseries()}
    ids_plain = {"rheed": rheed, "ts": ids["ts"]}
    local_server.faults.set(error_statuses=[503])  # a non-default state that must survive
    before = _state(local_server)
    http = httpx.Client()
    for method, path, body in PROTECTED:
        url = local_server.url + _fill(path, ids if path.startswith("{rheed}") else ids_plain)
        payload = _fill(body, ids_plain)
        for headers in ({}, {"x-api-key": "wrong"}, {"X-API-KEY": local_server.api_key + "x"},
                        {"x-api-key": ""}):  # fmt: skip
            r = http.request(method, url, json=payload, headers=headers)
            assert r.status_code == 401, (method, path, headers, r.text)
            assert isinstance(r.json()["detail"], str)
            assert local_server.api_key not in r.text
    assert _state(local_server) == before


@pytest.mark.parametrize("header", ["X-API-KEY", "x-api-key", "X-Api-Key"])
def test_key_header_name_is_case_insensitive(local_server: LocalServer, header: str) -> None:
    r = httpx.get(local_server.url + "/tags/", headers={header: local_server.api_key})
    assert r.status_code == 200


def test_clock_and_presigned_put_need_no_key(local_server: LocalServer) -> None:
    assert httpx.get(local_server.url + "/gateway/time").status_code == 200
    proto = Proto.open(local_server.url, local_server.api_key)
    data_id = proto.create_rheed()
    meta = proto.presign_metadata(data_id, (2, 3, 3), 2, 0)
    url = proto.presign(0, meta).json()["url"]
    r = httpx.put(url, content=make_shard(random_frames(2, 3, 3)), headers={"content-type": ""})
    assert r.status_code == 200 and "etag" in r.headers


def test_several_keys_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    from atomscale_bluesky.server.config import keys_from_env

    monkeypatch.setenv("ATOMSCALE_LOCAL_API_KEYS", " k-one, k-two ,,")
    assert keys_from_env() == ["k-one", "k-two"]


def test_key_never_in_reprs_or_logs(tmp_path: Any, caplog: pytest.LogCaptureFixture) -> None:
    secret = "s3cr3t-key-value-0123456789"
    caplog.set_level(logging.DEBUG)
    with running_server(tmp_path / "d", api_key=secret, log_level="debug") as server:
        assert secret not in repr(server) and secret not in str(server)
        assert secret not in repr(server.reader)
        httpx.get(server.url + "/tags/", headers={"x-api-key": "nope"})
        Proto.open(server.url, secret).create_rheed()
    assert secret not in caplog.text
