"""Test helpers speaking the protocol with raw httpx, exactly as atomscale-protocol.md describes.

Shards are built here from zstandard + crc32c (protocol section 3.5), independently of the
project's client package, so the server is checked against the protocol text itself.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import Any

import crc32c
import httpx
import numpy as np
import zstandard

SHARD_KEY = "frames.zarr/frames/c/{}/0/0"
EMPTY = 0xFFFF_FFFF_FFFF_FFFF


def make_shard(frames: np.ndarray) -> bytes:
    """Encode (N, H, W) uint8 frames as one shard: zstd frames, LE uint64 index, CRC32C."""
    body = bytearray()
    index: list[int] = []
    compressor = zstandard.ZstdCompressor(level=3)
    for frame in frames:
        if not frame.any():
            index += [EMPTY, EMPTY]
            continue
        data = compressor.compress(np.ascontiguousarray(frame).tobytes())
        index += [len(body), len(data)]
        body += data
    packed = struct.pack(f"<{len(index)}Q", *index)
    return bytes(body) + packed + struct.pack("<I", crc32c.crc32c(packed))


def random_frames(n: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(1, 256, size=(n, h, w), dtype=np.uint8)


@dataclass
class Proto:
    """A raw protocol client: one httpx.Client with the key, plus the section 2/6 calls."""

    url: str
    api_key: str
    http: httpx.Client

    @classmethod
    def open(cls, url: str, api_key: str) -> Proto:
        return cls(url, api_key, httpx.Client(base_url=url, timeout=30.0))

    @property
    def auth(self) -> dict[str, str]:
        return {"x-api-key": self.api_key}  # lower case, like reqwest

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.http.get(path, headers=self.auth, **kw)

    def post(self, path: str, **kw: Any) -> httpx.Response:
        return self.http.post(path, headers={**self.auth, **kw.pop("headers", {})}, **kw)

    def create_rheed(
        self,
        fps: float = 10.0,
        rpm: float = 0.0,
        name: str = "probe",
        project_id: str | None = None,
        azimuth: str | None = None,
    ) -> str:
        body: dict[str, Any] = {
            "data_item_name": name,
            "rotational_period": None if rpm == 0 else fps * 60 / rpm,
            "rotations_per_min": rpm,
            "fps_capture_rate": fps,
        }
        if project_id is not None:
            body["project_id"] = project_id
        if azimuth is not None:
            body["azimuth_label"] = azimuth
        r = self.post("/rheed/stream/", json=body)
        assert r.status_code // 100 == 2, r.text
        data_id = r.json()
        assert isinstance(data_id, str)
        return data_id

    def presign_metadata(
        self,
        data_id: str,
        dims: tuple[int, int, int],
        chunk_size: int,
        start_ms: int,
        fps: float = 10.0,
        clock: tuple[int, float] | None = (0, 0.7),
    ) -> dict[str, str]:
        span = int(dims[0] / fps * 1000.0)
        meta = {
            "data_id": data_id,
            "data_stream": "rheed",
            "is_stream": "1",
            "is_rotating": "0",
            "raw_frame_rate": repr(float(fps)),
            "avg_frame_rate": repr(float(fps)),
            "chunk_size": str(chunk_size),
            "dims": ",".join(str(d) for d in dims),
            "start_unix_ms_utc": str(start_ms),
            "end_unix_ms_utc": str(start_ms + span),
        }
        if clock is not None:
            meta["clock_offset_ms"] = str(clock[0])
            meta["clock_uncertainty_ms"] = repr(clock[1])
        return meta

    def presign(
        self, chunk_idx: int, metadata: dict[str, Any], key: str | None = None
    ) -> httpx.Response:
        params = {
            "original_filename": key if key is not None else SHARD_KEY.format(chunk_idx),
            "num_parts": "1",
            "staging_type": "stream",
        }
        return self.post("/data_entries/raw_data/staged/upload_urls/", params=params, json=metadata)

    def put(self, url: str, body: bytes) -> httpx.Response:
        return self.http.put(url, content=body, headers={"content-type": ""})

    def upload(
        self,
        data_id: str,
        chunk_idx: int,
        frames: np.ndarray,
        chunk_size: int,
        start_ms: int = 1_700_000_000_000,
        fps: float = 10.0,
    ) -> httpx.Response:
        meta = self.presign_metadata(data_id, frames.shape, chunk_size, start_ms, fps)
        r = self.presign(chunk_idx, meta)
        assert r.status_code == 200, r.text
        return self.put(r.json()["url"], make_shard(frames))

    def end(self, data_id: str) -> httpx.Response:
        # no body at all, like the Rust client
        return self.http.post(f"/rheed/stream/{data_id}/end", headers=self.auth)

    def create_timeseries(self, name: str | None = "TS", points_per_chunk: int = 50) -> str:
        r = self.post(
            "/tool-state/stream/initialize",
            json={"stream_name": name, "points_per_chunk": points_per_chunk, "project_id": None},
        )
        assert r.status_code // 100 == 2, r.text
        body = r.json()
        assert isinstance(body["data_id"], str) and isinstance(body["processed_data_id"], str)
        return str(body["data_id"])


def close(a: float, b: float, tol: float = 1e-9) -> bool:
    return math.isclose(a, b, rel_tol=0, abs_tol=tol)
