"""Fixtures for the local Atomscale-compatible server: real uvicorn on 127.0.0.1, free ports.

- ``local_server``: a fresh server (in a thread of the test process) per test, data in tmp_path.
- ``local_server_process``: a fresh server in a child process, for clients that hold the GIL
  while they wait on HTTP (the official Rust-based ``atomscale`` streamers).
Both yield ``atomscale_bluesky.server.runner.LocalServer`` (``.url``, ``.api_key``, ``.data_dir``,
``.reader``, ``.faults``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def local_server(tmp_path: Path) -> Iterator[object]:
    from atomscale_bluesky.server.runner import running_server

    with running_server(data_dir=tmp_path / "server-data") as server:
        yield server


@pytest.fixture
def local_server_process(tmp_path: Path) -> Iterator[object]:
    from atomscale_bluesky.server.runner import running_server_process

    with running_server_process(data_dir=tmp_path / "server-data") as server:
        yield server
