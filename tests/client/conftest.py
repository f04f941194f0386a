"""Fixtures for client tests: a real local server (uvicorn on loopback) and client factory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from atomscale_bluesky.client import Backoff

#: Short retry delays for tests; the defaults (0.5 s doubling to 30 s) stay the reference's.
FAST_BACKOFF = Backoff(first=0.05, max=0.5)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Any]:
    from atomscale_bluesky.server.runner import running_server

    with running_server(data_dir=tmp_path / "server-data") as srv:
        yield srv


@pytest.fixture
def client_backoff() -> Backoff:
    """Client tests retry faster still (see tests/plugins/client_fixtures.py)."""
    return FAST_BACKOFF


def compress_threads() -> set[int]:
    """Native ids of the live frame compression threads of this process."""
    import threading

    return {
        t.native_id
        for t in threading.enumerate()
        if t.name.startswith("atomscale-compress") and t.native_id is not None and t.is_alive()
    }


def rheed_like(n: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    """Gaussian streaks plus noise: compresses like real RHEED frames."""
    rng = np.random.default_rng(seed)
    y = np.arange(h)[:, None]
    x = np.arange(w)[None, :]
    out = np.empty((n, h, w), np.uint8)
    for i in range(n):
        img = np.zeros((h, w))
        for cx in (0.3, 0.5, 0.7):
            img += (
                120
                * np.exp(-((x - cx * w) ** 2) / (2 * (0.015 * w) ** 2))
                * np.exp(-((y - 0.6 * h) ** 2) / (2 * (0.25 * h) ** 2))
            )
        img += 15 * np.sin(i / 7.0) + rng.normal(20, 6, (h, w))
        out[i] = np.clip(img, 0, 255).astype(np.uint8)
    return out


def stored_chunks(reader: Any, data_id: str, chunk_size: int) -> dict[int, np.ndarray]:
    """Frames per chunk index as stored on the server (chunk k at its dense ``offset``)."""
    all_frames = reader.frames(data_id)
    return {
        c["idx"]: all_frames[c["offset"] : c["offset"] + c["n_frames"]]
        for c in reader.chunk_times(data_id)
    }
