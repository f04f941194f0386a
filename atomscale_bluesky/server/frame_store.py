"""On-disk frames of one RHEED stream as a Zarr v3 array that zarr-python 3 opens directly.

Layout: ``<data_dir>/rheed/<data_id>/frames.zarr/zarr.json`` describes ONE array of shape
(N_total, H, W) uint8 on a regular chunk grid (chunk_size, H, W); chunk k is the shard file
``frames.zarr/c/k/0/0`` in the protocol's own shard format (sharding_indexed, inner chunk (1, H, W),
zstd level 3, index bytes+crc32c at the end). Chunk k therefore holds frames
[k*chunk_size, k*chunk_size + N_k): a partial chunk is stored with its missing frames marked empty
(read as 0), and N_total = max(k*chunk_size + N_k) so a partial last chunk is included.
Files are written to a temporary name and renamed, so readers never see half a file.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

import numpy as np

from atomscale_bluesky.server.shards import decode_shard


def array_metadata(n_total: int, chunk_size: int, height: int, width: int, attrs: dict) -> dict:
    """The zarr.json document for the stream array (protocol section 3.2, stacked)."""
    return {
        "zarr_format": 3,
        "node_type": "array",
        "shape": [n_total, height, width],
        "data_type": "uint8",
        "chunk_grid": {
            "name": "regular",
            "configuration": {"chunk_shape": [chunk_size, height, width]},
        },
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
        "fill_value": 0,
        "codecs": [
            {
                "name": "sharding_indexed",
                "configuration": {
                    "chunk_shape": [1, height, width],
                    "codecs": [
                        {"name": "bytes", "configuration": {"endian": "little"}},
                        {"name": "zstd", "configuration": {"level": 3, "checksum": False}},
                    ],
                    "index_codecs": [
                        {"name": "bytes", "configuration": {"endian": "little"}},
                        {"name": "crc32c"},
                    ],
                    "index_location": "end",
                },
            }
        ],
        "attributes": attrs,
    }


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


class FrameStore:
    """The frames.zarr array of one stream: write shards and metadata, read frame ranges."""

    def __init__(self, root: Path) -> None:
        self.root = root  # <data_dir>/rheed/<data_id>/frames.zarr

    def shard_path(self, chunk_idx: int) -> Path:
        return self.root / "c" / str(chunk_idx) / "0" / "0"

    def write_shard(self, chunk_idx: int, shard: bytes) -> None:
        """Store (or overwrite) chunk ``chunk_idx``; ``shard`` must have chunk_size index entries."""
        _atomic_write(self.shard_path(chunk_idx), shard)

    def write_metadata(
        self, n_total: int, chunk_size: int, height: int, width: int, attrs: dict
    ) -> None:
        doc = array_metadata(n_total, chunk_size, height, width, attrs)
        _atomic_write(self.root / "zarr.json", json.dumps(doc, indent=2).encode())

    def read(self, start: int, stop: int, chunk_size: int, height: int, width: int) -> np.ndarray:
        """Frames [start, stop) as (n, H, W) uint8; chunks never uploaded read as zeros."""
        out = np.zeros((max(stop - start, 0), height, width), dtype=np.uint8)
        if stop <= start:
            return out
        for k in range(start // chunk_size, (stop - 1) // chunk_size + 1):
            path = self.shard_path(k)
            if not path.exists():
                continue
            frames = decode_shard(path.read_bytes(), (chunk_size, height, width)).frames
            lo = max(start, k * chunk_size)
            hi = min(stop, (k + 1) * chunk_size)
            out[lo - start : hi - start] = frames[lo - k * chunk_size : hi - k * chunk_size]
        return out
