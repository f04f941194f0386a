"""Bad input to the local server: a table of malformed and hostile requests, each answered with a
clear 4xx and its reason, while every stored frame and point stays as it was (read back)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from atomscale_bluesky.client import AtomscaleClient
from atomscale_bluesky.server.runner import running_server
from atomscale_bluesky.shards import encode_shard, shard_key

from .conftest import PRESIGN

FRAMES = np.random.default_rng(5).integers(1, 255, (10, 16, 16), dtype=np.uint8)


class World:
    """A server holding one good RHEED stream (chunk 0) and one time series, and a raw client."""

    def __init__(self, server: Any, tmp: Path) -> None:
        self.server = server
        with AtomscaleClient(server.api_key, server.url, spool_dir=tmp / "spool",
                             clock_sync=False, spool_min_free_bytes=0) as client:  # fmt: skip
            rheed = client.open_rheed_stream(fps=5.0)
            rheed.push(FRAMES)
            assert rheed.finalize(30).ok
            ts = client.open_timeseries_stream()
            ts.push("t", [1.7e9, 1.7e9 + 1], [1.0, 2.0], "C")
            assert ts.finalize(30).ok
        self.rheed, self.ts = rheed.data_id, ts.data_id
        self.http = httpx.Client(
            base_url=server.url, headers={"X-API-KEY": server.api_key}, timeout=30
        )

    def meta(self, **over: Any) -> dict[str, Any]:
        meta = {"data_id": self.rheed, "data_stream": "rheed", "dims": "10,16,16",
                "chunk_size": "10", "start_unix_ms_utc": "1700000000000",
                "end_unix_ms_utc": "1700000002000"}  # fmt: skip
        meta.update(over)
        return {k: v for k, v in meta.items() if v is not None}

    def presign(
        self, idx: int = 1, params: dict[str, str] | None = None, **over: Any
    ) -> httpx.Response:
        query = {"original_filename": shard_key(idx), "num_parts": "1", "staging_type": "stream"}
        query.update(params or {})
        return self.http.post(PRESIGN, params=query, json=self.meta(**over))

    def put(self, body: bytes, **over: Any) -> httpx.Response:
        response = self.presign(**over)
        assert response.status_code == 200, response.text
        return httpx.put(response.json()["url"], content=body)

    def chunk(self, **over: Any) -> httpx.Response:
        body = {"data_id": self.ts, "chunk_index": 5, "channel_name": "t",
                "timestamps": [1.7e9 + 5], "values": [5.0], "units": "C"}  # fmt: skip
        body.update(over)
        return self.http.post("/tool-state/stream/chunk", json=body)


@dataclass(frozen=True)
class Bad:
    name: str
    send: Callable[[World], httpx.Response]
    status: int
    says: str  # a piece of the answer's reason


CASES = [
    Bad("presign: more frames than chunk_size", lambda w: w.presign(dims="11,16,16"), 400, "chunk_size"),
    Bad("presign: dims not numbers", lambda w: w.presign(dims="a,b,c"), 400, "dims must be"),
    Bad("presign: zero-sized dims", lambda w: w.presign(dims="0,16,16"), 400, "dims"),
    Bad("presign: frames 70000 px wide", lambda w: w.presign(dims="1,16,70000"), 400, "out of range"),
    Bad("presign: no data_id", lambda w: w.presign(data_id=None), 400, "data_id"),
    Bad("presign: data_stream not rheed", lambda w: w.presign(data_stream="video"), 400, "data_stream"),
    Bad("presign: fractional chunk_size", lambda w: w.presign(chunk_size="1.5"), 400, "integer"),
    Bad("presign: NaN start time", lambda w: w.presign(start_unix_ms_utc="NaN"), 400, "start_unix_ms_utc"),
    Bad("presign: negative start time", lambda w: w.presign(start_unix_ms_utc="-5"), 400, "out of range"),
    Bad("presign: start time past 2**53 ms", lambda w: w.presign(start_unix_ms_utc=str(2**60)), 400, "out of range"),
    Bad("presign: unknown stream", lambda w: w.presign(data_id="no-such-stream"), 404, "unknown"),
    Bad("presign: multipart", lambda w: w.presign(params={"num_parts": "2"}), 400, "num_parts=1"),
    Bad("presign: frame shape differs from the stream's", lambda w: w.presign(dims="10,8,8"), 409, "differs"),
    Bad("presign: chunk_size differs from the stream's", lambda w: w.presign(chunk_size="20"), 409, "chunk_size"),
    Bad("presign: body is a list", lambda w: w.http.post(PRESIGN, params={"original_filename": shard_key(1), "num_parts": "1", "staging_type": "stream"}, json=[1, 2]), 422, ""),
    Bad("PUT: garbage bytes", lambda w: w.put(b"\x00garbage" * 50), 400, "does not decode"),
    Bad("PUT: empty body", lambda w: w.put(b""), 400, "empty body"),
    Bad("PUT: shard of 5 frames for dims of 10", lambda w: w.put(encode_shard(FRAMES[:5])), 400, "does not decode"),
    Bad("PUT: shard of other-sized frames", lambda w: w.put(encode_shard(np.ones((10, 8, 8), np.uint8))), 400, "does not decode"),
    Bad("PUT: unknown token", lambda w: httpx.put(f"{w.server.url}/upload/nosuchtoken", content=b"x"), 403, "unknown"),
    Bad("tool-state: lengths differ", lambda w: w.chunk(values=[1.0, 2.0]), 422, "same length"),
    Bad("tool-state: timestamps as strings", lambda w: w.chunk(timestamps=["now"]), 422, "timestamps"),
    Bad("tool-state: unknown stream", lambda w: w.chunk(data_id="nope"), 404, "unknown"),
    Bad("tool-state: negative chunk index", lambda w: w.chunk(chunk_index=-1), 422, "chunk_index"),
    Bad("tool-state: chunk to a RHEED stream", lambda w: w.chunk(data_id=w.rheed), 404, "tool-state"),
    Bad("create RHEED: fps 0", lambda w: w.http.post("/rheed/stream/", json={"data_item_name": "x", "rotations_per_min": 0, "fps_capture_rate": 0}), 422, "fps_capture_rate"),
    Bad("create RHEED: not JSON", lambda w: w.http.post("/rheed/stream/", content=b"{", headers={"Content-Type": "application/json"}), 422, ""),
    Bad("link: unknown sample", lambda w: w.http.post("/data_entries/physical_sample", json={"data_ids": [w.rheed], "physical_sample_id": "nope"}), 404, "physical sample"),
    Bad("tags: attach to unknown data item", lambda w: w.http.post("/tags/data-items/", json={"data_ids": ["nope"], "tag_ids": ["nope"]}), 404, "unknown"),
    Bad("samples: blank name", lambda w: w.http.post("/physical_samples/", json={"name": "   "}), 400, "empty"),
    Bad("end: unknown stream", lambda w: w.http.post("/rheed/stream/nope/end"), 404, "unknown"),
    Bad("points: unknown channel", lambda w: w.http.get(f"/local/timeseries/{w.ts}/points", params={"channel": "nope"}), 404, "no channel"),
    Bad("frames: start past the end", lambda w: w.http.get(f"/local/rheed/{w.rheed}/frames", params={"start": "x"}), 422, "start"),
]  # fmt: skip


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("bad-requests")
    with running_server(data_dir=tmp / "server") as server:
        yield World(server, tmp)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_request_gets_its_reason_and_stored_data_stays(world: World, case: Bad) -> None:
    response = case.send(world)
    assert response.status_code == case.status, response.text
    assert case.says.lower() in response.text.lower(), response.text
    reader = world.server.reader
    np.testing.assert_array_equal(reader.frames(world.rheed), FRAMES)
    assert [c["idx"] for c in reader.chunk_times(world.rheed)] == [0]
    _, values, _ = reader.points(world.ts, "t")
    np.testing.assert_array_equal(values, [1.0, 2.0])
    assert reader.health()["internal_errors"] == 0
