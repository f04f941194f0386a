"""Conformance: drive the server with raw httpx exactly as atomscale-protocol.md describes."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
import zarr
from server_kit import SHARD_KEY, Proto, make_shard, random_frames

from atomscale_bluesky.server.runner import LocalServer


@pytest.fixture
def proto(local_server: LocalServer) -> Iterator[Proto]:
    client = Proto.open(local_server.url, local_server.api_key)
    yield client
    client.http.close()


def open_zarr(server: LocalServer, data_id: str) -> zarr.Array:
    array = zarr.open_array(server.data_dir / "rheed" / data_id / "frames.zarr", mode="r")
    assert isinstance(array, zarr.Array)
    return array


# -- clock ----------------------------------------------------------------------------------------


def test_gateway_time_is_an_unauthenticated_ntp_style_exchange(local_server: LocalServer) -> None:
    t1 = time.time() * 1000
    r = httpx.get(local_server.url + "/gateway/time", headers={"Cache-Control": "no-store"})
    t4 = time.time() * 1000
    assert r.status_code == 200
    assert r.headers["cache-control"] == "no-store"
    body = r.json()
    t2, t3 = body["receivedAtUnixMs"], body["transmittedAtUnixMs"]
    assert t1 - 5 <= t2 <= t3 <= t4 + 5
    offset = ((t2 - t1) + (t3 - t4)) / 2
    # same host clock: the NTP estimate is off by at most half the round trip, however slow
    assert abs(offset) <= (t4 - t1) / 2 + 5


def test_double_leading_slash_is_routed(proto: Proto) -> None:
    """An endpoint ending in '/' makes the Rust client send '//rheed/stream/'."""
    # full URLs: httpx would read a relative "//x" as a host name
    assert proto.get(proto.url + "//physical_samples/").status_code == 200
    r = proto.post(proto.url + "//rheed/stream/", json={"data_item_name": "x", "rotational_period": None,
                                            "rotations_per_min": 0.0, "fps_capture_rate": 5.0})  # fmt: skip
    assert r.status_code // 100 == 2 and isinstance(r.json(), str)
    assert httpx.get(proto.url + "//gateway/time").status_code == 200


# -- samples, tags, links -------------------------------------------------------------------------


def test_samples_list_create_and_409_on_duplicate_name(proto: Proto) -> None:
    assert proto.get("/physical_samples/").json() == []
    r = proto.post("/physical_samples/", json={"name": "GaAs-001"})
    assert r.status_code // 100 == 2
    sample_id = r.json()["physical_sample_id"]
    assert r.json()["id"] == sample_id
    assert str(uuid.UUID(sample_id)) == sample_id  # a lower-case UUID the client can match exactly
    listed = proto.get("/physical_samples/").json()
    assert [(s["id"], s["name"]) for s in listed] == [(sample_id, "GaAs-001")]
    for dup in ("GaAs-001", "gaas-001", "  GAAS-001 "):
        r = proto.post("/physical_samples/", json={"name": dup})
        assert r.status_code == 409
        assert r.json()["detail"]["physical_sample_id"] == sample_id
    assert len(proto.get("/physical_samples/").json()) == 1


def test_tags_list_create_duplicate_and_attach(proto: Proto, local_server: LocalServer) -> None:
    r = proto.post("/tags/", json={"name": "MBE"})
    assert r.status_code // 100 == 2
    tag_id = r.json()["id"]
    r = proto.post("/tags/", json={"name": "mbe"})
    assert r.status_code == 409 and r.json()["detail"]["id"] == tag_id
    assert [t["name"] for t in proto.get("/tags/").json()] == ["MBE"]
    other = proto.post("/tags/", json={"name": "run-7"}).json()["id"]
    data_id = proto.create_rheed()
    r = proto.post("/tags/data-items/", json={"data_ids": [data_id], "tag_ids": [tag_id, other]})
    assert r.status_code // 100 == 2
    r = proto.post("/tags/data-items/", json={"data_ids": [data_id], "tag_ids": [tag_id]})
    assert r.status_code // 100 == 2  # attaching twice is harmless
    tags = local_server.reader.rheed_stream(data_id)["tags"]
    assert [(t["id"], t["name"]) for t in tags] == [(tag_id, "MBE"), (other, "run-7")]


def test_sample_link_and_project_tracking(proto: Proto, local_server: LocalServer) -> None:
    project = "11111111-2222-3333-4444-555555555555"
    data_id = proto.create_rheed(project_id=project)
    sample_id = proto.post("/physical_samples/", json={"name": "S"}).json()["id"]
    r = proto.post(
        "/data_entries/physical_sample",
        json={"data_ids": [data_id], "physical_sample_id": sample_id},
    )
    assert r.status_code // 100 == 2
    r = proto.post(
        f"/projects/{project}/configuration/tracking_samples",
        json={"physical_sample_id": sample_id, "set_active": True},
    )
    assert r.status_code // 100 == 2
    info = local_server.reader.rheed_stream(data_id)
    assert info["sample"] == {"id": sample_id, "name": "S"}
    assert info["project_id"] == project
    assert local_server.reader.projects() == [
        {"project_id": project, "tracking_samples": [sample_id], "active_sample": sample_id}
    ]


# -- RHEED ----------------------------------------------------------------------------------------


def test_create_returns_bare_string_and_stores_azimuth(
    proto: Proto, local_server: LocalServer
) -> None:
    r = proto.post(
        "/rheed/stream/",
        content=b'{"data_item_name":"probe","rotational_period":null,"rotations_per_min":0.0,'
        b'"fps_capture_rate":29.97,"project_id":"p-1","azimuth_label":"[110]"}',
        headers={"content-type": "application/json"},
    )
    assert r.status_code // 100 == 2
    assert r.text.startswith('"') and r.text.endswith('"')
    data_id = r.json()
    info = local_server.reader.rheed_stream(data_id)
    assert info["name"] == "probe"
    assert info["fps"] == 29.97
    assert info["rotations_per_min"] == 0.0 and info["rotational_period"] is None
    assert info["azimuth_label"] == "[110]" and info["project_id"] == "p-1"
    assert info["status"] == "active" and info["n_frames"] == 0


def test_presign_shape_and_single_use_url(proto: Proto, local_server: LocalServer) -> None:
    data_id = proto.create_rheed()
    frames = random_frames(20, 8, 6)
    meta = proto.presign_metadata(data_id, (20, 8, 6), 20, 1_700_000_000_000)
    r1 = proto.presign(0, meta)
    r2 = proto.presign(0, meta)
    assert r1.status_code == 200
    url1, url2 = r1.json()["url"], r2.json()["url"]
    assert url1.startswith(local_server.url + "/") and url1 != url2  # fresh URL on every call
    assert len(url1.rsplit("/", 1)[1]) >= 32  # unguessable token
    assert proto.put(url1, make_shard(frames)).status_code == 200
    assert proto.put(url1, make_shard(frames)).status_code == 403  # spent
    assert proto.put(url2, make_shard(frames)).status_code == 200  # the other one still works
    np.testing.assert_array_equal(local_server.reader.frames(data_id), frames)


def test_chunks_in_order_out_of_order_repeated_and_partial_last(
    proto: Proto, local_server: LocalServer
) -> None:
    data_id = proto.create_rheed(fps=10.0)
    frames = random_frames(47, 12, 10, seed=3)
    chunks = [frames[0:20], frames[20:40], frames[40:47]]
    starts = [1_700_000_000_000 + 2000 * k for k in range(3)]
    for k in (2, 0, 1, 1, 0):  # out of order, with repeats
        r = proto.upload(data_id, k, chunks[k], chunk_size=20, start_ms=starts[k])
        assert r.status_code == 200, r.text
    np.testing.assert_array_equal(local_server.reader.frames(data_id), frames)
    np.testing.assert_array_equal(local_server.reader.frames(data_id, 15, 42), frames[15:42])
    array = open_zarr(local_server, data_id)
    assert array.shape == (47, 12, 10) and array.dtype == np.uint8
    np.testing.assert_array_equal(array[:], frames)
    times = local_server.reader.chunk_times(data_id)
    assert [(c["idx"], c["n_frames"], c["offset"], c["dims"]) for c in times] == [
        (0, 20, 0, [20, 12, 10]), (1, 20, 20, [20, 12, 10]), (2, 7, 40, [7, 12, 10])
    ]  # fmt: skip
    assert [c["start_unix_ms_utc"] for c in times] == starts
    assert [c["end_unix_ms_utc"] for c in times] == [starts[0] + 2000, starts[1] + 2000,
                                                      starts[2] + 700]  # fmt: skip
    assert times[0]["clock_offset_ms"] == 0 and times[0]["clock_uncertainty_ms"] == 0.7
    counters = local_server.reader.rheed_stream(data_id)["counters"]
    assert counters["chunks_received"] == 5 and counters["duplicates"] == 2
    assert counters["frames_stored"] == 47


def test_missing_middle_chunk_reads_as_zeros_and_fills_in_later(
    proto: Proto, local_server: LocalServer
) -> None:
    data_id = proto.create_rheed()
    frames = random_frames(30, 4, 4, seed=5)
    proto.upload(data_id, 0, frames[:10], chunk_size=10)
    proto.upload(data_id, 2, frames[20:], chunk_size=10)
    got = local_server.reader.frames(data_id)
    np.testing.assert_array_equal(got[:10], frames[:10])
    assert not got[10:20].any()
    proto.upload(data_id, 1, frames[10:20], chunk_size=10)
    np.testing.assert_array_equal(open_zarr(local_server, data_id)[:], frames)


def test_all_zero_frames_use_all_ff_index_entries(proto: Proto, local_server: LocalServer) -> None:
    data_id = proto.create_rheed()
    frames = random_frames(6, 5, 7, seed=9)
    frames[[0, 3, 5]] = 0
    shard = make_shard(frames)
    assert shard[-4 - 16 * 6 : -4 - 16 * 5] == b"\xff" * 16  # entry 0 is all 0xFF
    zero = np.zeros((6, 5, 7), dtype=np.uint8)
    assert proto.upload(data_id, 0, frames, chunk_size=6).status_code == 200
    assert proto.upload(data_id, 1, zero, chunk_size=6).status_code == 200  # an all-MAX index
    np.testing.assert_array_equal(
        local_server.reader.frames(data_id), np.concatenate([frames, zero])
    )


def test_single_frame_push_and_finalize(proto: Proto, local_server: LocalServer) -> None:
    data_id = proto.create_rheed()
    frame = random_frames(1, 9, 9)
    assert proto.upload(data_id, 0, frame, chunk_size=20).status_code == 200
    r = proto.end(data_id)
    assert r.status_code == 200
    assert r.json()["status"] == "finalized"
    assert proto.end(data_id).status_code == 200  # repeat is harmless
    info = local_server.reader.rheed_stream(data_id)
    assert info["status"] == "finalized" and info["n_frames"] == 1
    np.testing.assert_array_equal(local_server.reader.frames(data_id), frame)
    # a chunk arriving after finalize is still stored (and counted as late)
    assert proto.upload(data_id, 1, frame, chunk_size=20).status_code == 200
    info = local_server.reader.rheed_stream(data_id)
    assert info["n_frames"] == 2 and info["counters"]["late_chunks"] == 1  # dense: no blank slots
    np.testing.assert_array_equal(local_server.reader.frames(data_id), np.concatenate([frame] * 2))


def test_polling_endpoints_say_no_data_yet(proto: Proto) -> None:
    data_id = proto.create_rheed()
    for path in (f"/rheed/timeseries/{data_id}/", f"/similarity/rheed/{data_id}/trajectory/"):
        r = proto.get(path, params={"last_n": 10})
        assert r.status_code == 404 and r.json() == {"detail": "no data yet"}


# -- time series ----------------------------------------------------------------------------------


def test_timeseries_several_channels_units_repeats_and_after_finalize(
    proto: Proto, local_server: LocalServer
) -> None:
    data_id = proto.create_timeseries(points_per_chunk=2)
    t0 = 1_700_000_000.0
    r = proto.post("/tool-state/stream/chunk", json={
        "data_id": data_id, "chunk_index": 1, "channel_name": "temperature",
        "timestamps": [t0 + 2.0, t0 + 3.0], "values": [26.0, 27.5], "units": "C"})  # fmt: skip
    assert r.status_code // 100 == 2
    multi = {"data_id": data_id, "chunk_index": 0, "channels": {
        "pressure": {"timestamps": [t0, t0 + 1.0], "values": [1e-9, 2e-9], "units": "mbar"},
        "shutter": {"timestamps": [t0 + 0.5], "values": [1.0]},
        "temperature": {"timestamps": [t0, t0 + 1.0], "values": [25.0, 25.5], "units": "C"}}}  # fmt: skip
    for _ in range(2):  # a retried chunk replaces itself
        assert proto.post("/tool-state/stream/chunk/multi", json=multi).status_code // 100 == 2
    r = proto.http.post(f"/tool-state/stream/{data_id}/finalize", headers=proto.auth)
    assert r.status_code // 100 == 2
    late = {"data_id": data_id, "chunk_index": 2, "channel_name": "temperature",
            "timestamps": [t0 + 4.0], "values": [28.0], "units": "C"}  # fmt: skip
    assert proto.post("/tool-state/stream/chunk", json=late).status_code // 100 == 2

    summary = local_server.reader.timeseries(data_id)
    assert summary["status"] == "finalized"
    channels = summary["channels"]
    assert {k: (v["units"], v["count"]) for k, v in channels.items()} == {
        "pressure": ("mbar", 2), "shutter": (None, 1), "temperature": ("C", 5)
    }  # fmt: skip
    ts, values, units = local_server.reader.points(data_id, "temperature")
    assert units == "C"
    np.testing.assert_array_equal(ts, [t0, t0 + 1, t0 + 2, t0 + 3, t0 + 4])
    np.testing.assert_array_equal(values, [25.0, 25.5, 26.0, 27.5, 28.0])
    ts, values, units = local_server.reader.points(data_id, "pressure")
    np.testing.assert_array_equal(values, [1e-9, 2e-9])
    assert summary["counters"]["duplicates"] == 1 and summary["counters"]["late_chunks"] == 1
    # the SDK's tool-state provider shape
    props = proto.get(f"/tool-state/{data_id}/timeseries/").json()["properties"]
    assert props["pressure"]["unix_timestamp_ms"] == [t0 * 1000, (t0 + 1) * 1000]
    assert props["pressure"]["units"] == "mbar"


def test_timeseries_initialize_shapes(proto: Proto, local_server: LocalServer) -> None:
    r = proto.post("/tool-state/stream/initialize",
                   json={"stream_name": "TS", "synth_source_id": 7, "points_per_chunk": 50,
                         "project_id": "1111"})  # fmt: skip
    assert r.status_code // 100 == 2
    body = r.json()
    assert set(body) == {"data_id", "processed_data_id"}
    info = local_server.reader.timeseries(body["data_id"])
    assert (info["name"], info["synth_source_id"], info["points_per_chunk"]) == ("TS", 7, 50)
    r = proto.post("/tool-state/stream/initialize",
                   json={"stream_name": None, "points_per_chunk": 50, "project_id": None})  # fmt: skip
    assert r.status_code // 100 == 2
    assert local_server.reader.timeseries(r.json()["data_id"])["name"] is None
    kinds = sorted(s["kind"] for s in local_server.reader.streams())
    assert kinds == ["timeseries", "timeseries"]


def test_shard_key_echoed_and_key_must_match_chunk(proto: Proto) -> None:
    data_id = proto.create_rheed()
    meta = proto.presign_metadata(data_id, (2, 2, 2), 20, 0)
    r = proto.presign(3, meta)
    assert r.json()["key"] == SHARD_KEY.format(3)


def test_openapi_describes_every_protocol_endpoint(local_server: LocalServer) -> None:
    doc = httpx.get(local_server.url + "/openapi.json").json()
    expected = {
        ("get", "/gateway/time"), ("post", "/rheed/stream/"), ("post", "/rheed/stream/{data_id}/end"),
        ("post", "/data_entries/raw_data/staged/upload_urls/"), ("put", "/upload/{token}"),
        ("get", "/physical_samples/"), ("post", "/physical_samples/"), ("get", "/tags/"),
        ("post", "/tags/"), ("post", "/tags/data-items/"), ("post", "/data_entries/physical_sample"),
        ("post", "/projects/{project_id}/configuration/tracking_samples"),
        ("post", "/tool-state/stream/initialize"), ("post", "/tool-state/stream/chunk"),
        ("post", "/tool-state/stream/chunk/multi"), ("post", "/tool-state/stream/{data_id}/finalize"),
        ("get", "/rheed/timeseries/{data_id}/"), ("get", "/similarity/rheed/{data_id}/trajectory/"),
        ("get", "/local/streams"), ("get", "/local/rheed/{data_id}/frames"), ("put", "/local/faults"),
    }  # fmt: skip
    present = {(m, p) for p, ops in doc["paths"].items() for m in ops}
    assert expected <= present, expected - present
