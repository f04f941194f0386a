"""Bad requests get a clear 4xx with a message, stored data stays as it was, and nothing 500s."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from server_kit import SHARD_KEY, Proto, make_shard, random_frames

from atomscale_bluesky.server.runner import LocalServer, running_server

GOOD_FRAMES = random_frames(20, 8, 6, seed=11)


@dataclass
class World:
    server: LocalServer
    proto: Proto
    rheed: str
    ts: str
    sample: str
    tag: str

    def snapshot(self) -> Any:
        r = self.server.reader
        return (
            r.frames(self.rheed).tobytes(),
            [{k: v for k, v in c.items()} for c in r.chunk_times(self.rheed)],
            [
                np.asarray(a).tolist() if not isinstance(a, str) else a
                for a in r.points(self.ts, "temp")
            ],
            r.samples(),
            r.tags(),
            r.projects(),
            [(s["data_id"], s["status"], s["sample"], s["tags"]) for s in r.streams()],
        )


@pytest.fixture
def world(local_server: LocalServer) -> Iterator[World]:
    proto = Proto.open(local_server.url, local_server.api_key)
    rheed = proto.create_rheed()
    assert proto.upload(rheed, 0, GOOD_FRAMES, chunk_size=20).status_code == 200
    ts = proto.create_timeseries()
    chunk = {"data_id": ts, "chunk_index": 0, "channel_name": "temp", "timestamps": [1.0, 2.0],
             "values": [3.0, 4.0], "units": "C"}  # fmt: skip
    assert proto.post("/tool-state/stream/chunk", json=chunk).status_code == 200
    sample = proto.post("/physical_samples/", json={"name": "S"}).json()["id"]
    tag = proto.post("/tags/", json={"name": "T"}).json()["id"]
    yield World(local_server, proto, rheed, ts, sample, tag)
    proto.http.close()


def _ok_meta(w: World, **over: str) -> dict[str, str]:
    meta = w.proto.presign_metadata(w.rheed, (20, 8, 6), 20, 1_700_000_000_000)
    meta.update(over)
    return meta


PRESIGN = "/data_entries/raw_data/staged/upload_urls/"
Q = {"original_filename": SHARD_KEY.format(1), "num_parts": "1", "staging_type": "stream"}
UNKNOWN = "0badc0de-0000-4000-8000-000000000000"
RHEED_BODY = {"data_item_name": "x", "rotational_period": None, "rotations_per_min": 0.0,
              "fps_capture_rate": 10.0}  # fmt: skip

# (id, method, path, kwargs, expected status) -- "{rheed}", "{ts}", "{sample}", "{tag}" filled in
CASES: list[tuple[str, str, str, dict[str, Any], int]] = [
    ("malformed-json", "POST", "/physical_samples/", {"content": b'{"name": '}, 422),
    ("json-not-object", "POST", "/tags/", {"json": ["x"]}, 422),
    ("name-wrong-type", "POST", "/physical_samples/", {"json": {"name": 5}}, 422),
    ("name-empty", "POST", "/tags/", {"json": {"name": ""}}, 422),
    ("name-blank", "POST", "/physical_samples/", {"json": {"name": "   "}}, 400),
    ("no-body", "POST", "/physical_samples/", {}, 422),
    (
        "fps-as-string",
        "POST",
        "/rheed/stream/",
        {"json": {**RHEED_BODY, "fps_capture_rate": "10"}},
        422,
    ),
    ("fps-zero", "POST", "/rheed/stream/", {"json": {**RHEED_BODY, "fps_capture_rate": 0}}, 422),
    (
        "rpm-negative",
        "POST",
        "/rheed/stream/",
        {"json": {**RHEED_BODY, "rotations_per_min": -1}},
        422,
    ),
    ("fps-missing", "POST", "/rheed/stream/", {"json": {"data_item_name": "x"}}, 422),
    ("end-unknown", "POST", f"/rheed/stream/{UNKNOWN}/end", {}, 404),
    ("end-of-timeseries", "POST", "/rheed/stream/{ts}/end", {}, 404),
    ("end-dotdot", "POST", "/rheed/stream/%2e%2e/end", {}, 422),
    ("end-bad-chars", "POST", "/rheed/stream/a.b/end", {}, 422),
    ("end-encoded-slash", "POST", "/rheed/stream/..%2F..%2Fetc/end", {}, 404),
    (
        "link-unknown-stream",
        "POST",
        "/data_entries/physical_sample",
        {"json": {"data_ids": [UNKNOWN], "physical_sample_id": "{sample}"}},
        404,
    ),
    (
        "link-unknown-sample",
        "POST",
        "/data_entries/physical_sample",
        {"json": {"data_ids": ["{rheed}"], "physical_sample_id": UNKNOWN}},
        404,
    ),
    (
        "link-path-trick",
        "POST",
        "/data_entries/physical_sample",
        {"json": {"data_ids": ["../../etc"], "physical_sample_id": "{sample}"}},
        422,
    ),
    (
        "link-empty-ids",
        "POST",
        "/data_entries/physical_sample",
        {"json": {"data_ids": [], "physical_sample_id": "{sample}"}},
        422,
    ),
    (
        "attach-unknown-tag",
        "POST",
        "/tags/data-items/",
        {"json": {"data_ids": ["{rheed}"], "tag_ids": [UNKNOWN]}},
        404,
    ),
    (
        "attach-ids-not-list",
        "POST",
        "/tags/data-items/",
        {"json": {"data_ids": "{rheed}", "tag_ids": ["{tag}"]}},
        422,
    ),
    (
        "track-unknown-sample",
        "POST",
        "/projects/p1/configuration/tracking_samples",
        {"json": {"physical_sample_id": UNKNOWN}},
        404,
    ),
    (
        "track-bad-project",
        "POST",
        "/projects/a.b/configuration/tracking_samples",
        {"json": {"physical_sample_id": "{sample}"}},
        422,
    ),
    (
        "track-set-active-string",
        "POST",
        "/projects/p1/configuration/tracking_samples",
        {"json": {"physical_sample_id": "{sample}", "set_active": "yes"}},
        422,
    ),
    (
        "ts-init-points-zero",
        "POST",
        "/tool-state/stream/initialize",
        {"json": {"points_per_chunk": 0}},
        422,
    ),
    (
        "ts-init-synth-source-beyond-64-bits",
        "POST",
        "/tool-state/stream/initialize",
        {"json": {"synth_source_id": 1 << 63}},
        422,
    ),
    (
        "ts-chunk-unknown",
        "POST",
        "/tool-state/stream/chunk",
        {
            "json": {
                "data_id": UNKNOWN,
                "chunk_index": 0,
                "channel_name": "temp",
                "timestamps": [1.0],
                "values": [1.0],
            }
        },
        404,
    ),
    (
        "ts-chunk-into-rheed",
        "POST",
        "/tool-state/stream/chunk",
        {
            "json": {
                "data_id": "{rheed}",
                "chunk_index": 0,
                "channel_name": "temp",
                "timestamps": [1.0],
                "values": [1.0],
            }
        },
        404,
    ),
    (
        "ts-chunk-length-mismatch",
        "POST",
        "/tool-state/stream/chunk",
        {
            "json": {
                "data_id": "{ts}",
                "chunk_index": 0,
                "channel_name": "temp",
                "timestamps": [1.0],
                "values": [1.0, 2.0],
            }
        },
        422,
    ),
    (
        "ts-chunk-nan-time",
        "POST",
        "/tool-state/stream/chunk",
        {
            "content": b'{"data_id": "{ts}", "chunk_index": 0, "channel_name": "temp", '
            b'"timestamps": [NaN], "values": [1.0]}'
        },
        422,
    ),
    (
        "ts-chunk-negative-index",
        "POST",
        "/tool-state/stream/chunk",
        {
            "json": {
                "data_id": "{ts}",
                "chunk_index": -1,
                "channel_name": "temp",
                "timestamps": [1.0],
                "values": [1.0],
            }
        },
        422,
    ),
    (
        "ts-chunk-values-strings",
        "POST",
        "/tool-state/stream/chunk",
        {
            "json": {
                "data_id": "{ts}",
                "chunk_index": 0,
                "channel_name": "temp",
                "timestamps": [1.0],
                "values": ["1.0"],
            }
        },
        422,
    ),
    (
        "ts-multi-bad-channel",
        "POST",
        "/tool-state/stream/chunk/multi",
        {"json": {"data_id": "{ts}", "chunk_index": 0, "channels": {"temp": [1.0]}}},
        422,
    ),
    ("ts-finalize-unknown", "POST", f"/tool-state/stream/{UNKNOWN}/finalize", {}, 404),
    ("presign-unknown-stream", "POST", PRESIGN, {"params": Q, "meta": {"data_id": UNKNOWN}}, 404),
    ("presign-timeseries-id", "POST", PRESIGN, {"params": Q, "meta": {"data_id": "{ts}"}}, 404),
    ("presign-bad-data-id", "POST", PRESIGN, {"params": Q, "meta": {"data_id": "../x"}}, 400),
    (
        "presign-key-dotdot",
        "POST",
        PRESIGN,
        {"params": {**Q, "original_filename": "frames.zarr/frames/c/1/0/0/../../../../x"}},
        400,
    ),
    (
        "presign-key-absolute",
        "POST",
        PRESIGN,
        {"params": {**Q, "original_filename": "/etc/passwd"}},
        400,
    ),
    (
        "presign-key-negative",
        "POST",
        PRESIGN,
        {"params": {**Q, "original_filename": "frames.zarr/frames/c/-1/0/0"}},
        400,
    ),
    ("presign-num-parts", "POST", PRESIGN, {"params": {**Q, "num_parts": "2"}}, 400),
    ("presign-staging-core", "POST", PRESIGN, {"params": {**Q, "staging_type": "core"}}, 400),
    ("presign-no-query", "POST", PRESIGN, {"meta": {}}, 422),
    ("presign-dims-text", "POST", PRESIGN, {"params": Q, "meta": {"dims": "a,b,c"}}, 400),
    ("presign-dims-zero", "POST", PRESIGN, {"params": Q, "meta": {"dims": "0,8,6"}}, 400),
    ("presign-dims-2d", "POST", PRESIGN, {"params": Q, "meta": {"dims": "8,6"}}, 400),
    ("presign-n-over-chunk", "POST", PRESIGN, {"params": Q, "meta": {"dims": "21,8,6"}}, 400),
    ("presign-shape-change", "POST", PRESIGN, {"params": Q, "meta": {"dims": "20,9,6"}}, 409),
    (
        "presign-chunk-size-change",
        "POST",
        PRESIGN,
        {"params": Q, "meta": {"chunk_size": "30"}},
        409,
    ),
    (
        "presign-start-not-int",
        "POST",
        PRESIGN,
        {"params": Q, "meta": {"start_unix_ms_utc": "soon"}},
        400,
    ),
    (
        "presign-missing-start",
        "POST",
        PRESIGN,
        {"params": Q, "meta": {"start_unix_ms_utc": None}},
        400,
    ),
    ("presign-meta-nested", "POST", PRESIGN, {"params": Q, "meta": {"dims": {"n": 1}}}, 422),
    ("presign-meta-list", "POST", PRESIGN, {"params": Q, "json": ["x"]}, 422),
    (
        "presign-huge-frames",
        "POST",
        PRESIGN,
        {"params": Q, "meta": {"dims": "20,65536,65536"}},
        400,
    ),
    ("put-unknown-token", "PUT", "/upload/" + "A" * 43, {"content": b"x"}, 403),
    ("put-token-trick", "PUT", "/upload/..%2F..%2Fatomscale.sqlite", {"content": b"x"}, 404),
    ("local-unknown-rheed", "GET", f"/local/rheed/{UNKNOWN}", {}, 404),
    ("local-frames-bad-start", "GET", "/local/rheed/{rheed}/frames?start=x", {}, 422),
    ("local-frames-of-ts", "GET", "/local/rheed/{ts}/frames", {}, 404),
    ("local-points-unknown-channel", "GET", "/local/timeseries/{ts}/points?channel=nope", {}, 404),
    ("local-points-no-channel", "GET", "/local/timeseries/{ts}/points", {}, 422),
    ("faults-unknown-switch", "PUT", "/local/faults", {"json": {"explode": True}}, 422),
    ("faults-bad-rate", "PUT", "/local/faults", {"json": {"error_rate": 2}}, 422),
    ("faults-bad-status", "PUT", "/local/faults", {"json": {"error_statuses": [200]}}, 422),
    ("faults-not-object", "PUT", "/local/faults", {"json": [1]}, 422),
    ("unknown-path", "GET", "/nope", {}, 404),
    ("wrong-method", "GET", "/rheed/stream/", {}, 405),
]


def _fill(value: Any, w: World) -> Any:
    if isinstance(value, (str, bytes)):
        for name in ("rheed", "ts", "sample", "tag"):
            token = "{" + name + "}"
            real = getattr(w, name)
            value = (
                value.replace(token, real)
                if isinstance(value, str)
                else value.replace(token.encode(), real.encode())
            )
        return value
    if isinstance(value, dict):
        return {k: _fill(v, w) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, w) for v in value]
    return value


def test_bad_requests_table(world: World) -> None:
    before = world.snapshot()
    http = world.proto.http
    for case_id, method, path, kwargs, expected in CASES:
        kw = dict(_fill(kwargs, world))
        if path == PRESIGN and "json" not in kw:
            kw.setdefault("meta", {})
        if "meta" in kw:
            meta = _ok_meta(world)
            for key, value in kw.pop("meta").items():
                if value is None:
                    meta.pop(key)
                else:
                    meta[key] = value
            kw["json"] = meta
        headers = {"x-api-key": world.server.api_key}
        if "content" in kw:
            headers["content-type"] = "application/json"
        r = http.request(method, world.server.url + _fill(path, world), headers=headers, **kw)
        assert r.status_code == expected, (case_id, r.status_code, r.text)
        detail = r.json()["detail"]
        assert detail, case_id
    assert world.snapshot() == before
    assert world.server.reader.health()["internal_errors"] == 0
    counters = world.server.reader.rheed_stream(world.rheed)["counters"]
    assert counters["rejected"] >= 2  # the shape and chunk_size conflicts were counted


def _presigned(w: World, dims: tuple[int, int, int], chunk_idx: int = 1) -> str:
    meta = w.proto.presign_metadata(w.rheed, dims, 20, 1_700_000_002_000)
    r = w.proto.presign(chunk_idx, meta)
    assert r.status_code == 200, r.text
    return str(r.json()["url"])


def test_undecodable_shards_are_refused_and_nothing_stored(world: World) -> None:
    before = world.snapshot()
    good = make_shard(random_frames(5, 8, 6, seed=1))
    wrong_hw = make_shard(random_frames(5, 4, 4))
    index = struct.pack("<10Q", *([0, 10**9] * 5))
    bad_entry = good[:100] + index + struct.pack("<I", __import__("crc32c").crc32c(index))
    corrupt_zstd = bytearray(good)
    corrupt_zstd[5] ^= 0xFF
    cases = {
        "random": np.random.default_rng(0).bytes(500),
        "truncated": good[:-7],
        "too-short": b"\x01\x02",
        "n-mismatch": make_shard(random_frames(4, 8, 6)),
        "hw-mismatch": wrong_hw,
        "entry-out-of-range": bad_entry,
        "corrupt-zstd": bytes(corrupt_zstd),
        "empty": b"",
    }
    for name, body in cases.items():
        url = _presigned(world, (5, 8, 6))
        r = world.proto.put(url, body)
        assert r.status_code == 400, (name, r.text)
        assert isinstance(r.json()["detail"], str) and r.json()["detail"], name
    assert world.snapshot() == before
    root = world.server.data_dir / "rheed" / world.rheed
    assert not (root / "frames.zarr" / "c.1.0.0").exists()  # shard 1: nothing past chunk 0
    assert not list((root / "incoming").iterdir())  # no shard left half written
    assert world.server.reader.health()["internal_errors"] == 0
    assert world.server.reader.rheed_stream(world.rheed)["counters"]["rejected"] == len(cases)


def test_shape_change_between_presign_and_put_is_refused(world: World) -> None:
    """Two streams' worth of shapes race: the stream keeps its first shape, the other is refused."""
    proto = world.proto
    data_id = proto.create_rheed()
    meta_a = proto.presign_metadata(data_id, (3, 4, 4), 3, 0)
    meta_b = proto.presign_metadata(data_id, (3, 5, 5), 3, 0)
    url_a = proto.presign(0, meta_a).json()["url"]
    url_b = proto.presign(1, meta_b).json()["url"]  # granted: no chunk stored yet
    frames = random_frames(3, 4, 4)
    assert proto.put(url_a, make_shard(frames)).status_code == 200
    r = proto.put(url_b, make_shard(random_frames(3, 5, 5)))
    assert r.status_code == 409 and "differs" in r.json()["detail"]
    np.testing.assert_array_equal(world.server.reader.frames(data_id), frames)
    assert [c["idx"] for c in world.server.reader.chunk_times(data_id)] == [0]


def test_expired_presign_is_403(tmp_path: Path) -> None:
    with running_server(tmp_path / "d", presign_ttl_s=0.2) as server:
        proto = Proto.open(server.url, server.api_key)
        data_id = proto.create_rheed()
        url = proto.presign(0, proto.presign_metadata(data_id, (2, 2, 2), 2, 0)).json()["url"]
        import time

        time.sleep(0.4)
        r = proto.put(url, make_shard(random_frames(2, 2, 2)))
        assert r.status_code == 403 and "expired" in r.json()["detail"]
        assert server.reader.rheed_stream(data_id)["n_frames"] == 0


def test_oversized_bodies_get_413(tmp_path: Path) -> None:
    with running_server(tmp_path / "d", max_json_bytes=2000, max_upload_bytes=3000) as server:
        proto = Proto.open(server.url, server.api_key)
        r = proto.post("/tags/", json={"name": "x" * 3000})
        assert r.status_code == 413 and "too large" in r.json()["detail"]

        def chunked() -> Iterator[bytes]:  # no Content-Length: counted while streaming
            for _ in range(10):
                yield b" " * 500

        r = proto.post("/tags/", content=chunked(), headers={"content-type": "application/json"})
        assert r.status_code == 413
        data_id = proto.create_rheed()
        url = proto.presign(0, proto.presign_metadata(data_id, (1, 100, 100), 2, 0)).json()["url"]
        r = proto.put(url, make_shard(random_frames(1, 100, 100)))  # ~10 kB of noise
        assert r.status_code == 413
        assert proto.get("/tags/").json() == []
        assert server.reader.rheed_stream(data_id)["n_frames"] == 0
        assert server.reader.health()["internal_errors"] == 0


def test_internal_errors_are_500_and_counted(local_server: LocalServer) -> None:
    """The catch-all answers 500 only for genuine bugs (here: storage closed under the app)."""
    from atomscale_bluesky.server.app import create_app
    from atomscale_bluesky.server.config import ServerSettings

    settings = ServerSettings(data_dir=local_server.data_dir / "other", api_keys=["k"])
    app = create_app(settings)
    app.state.ctx.storage.close()
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)

    async def go() -> httpx.Response:
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return await client.get("/tags/", headers={"x-api-key": "k"})

    import anyio

    r = anyio.run(go)
    assert r.status_code == 500 and r.json() == {"detail": "internal server error"}
    assert app.state.ctx.internal_errors == 1
