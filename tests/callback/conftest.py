"""Fixtures for the callback tests: a real local server (uvicorn) and clients writing to it."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from atomscale_bluesky.client import AtomscaleClient, Backoff
from atomscale_bluesky.server.runner import running_server


@pytest.fixture(scope="module")
def server() -> Iterator[object]:
    with running_server() as srv:
        yield srv


@pytest.fixture
def client(server, tmp_path) -> Iterator[AtomscaleClient]:
    """A client without clock correction, so stored times equal the hardware timestamps."""
    with AtomscaleClient(
        api_key=server.api_key,
        endpoint=server.url,
        spool_dir=tmp_path / "spool",
        clock_sync=False,
        upload_workers=4,
        backoff=Backoff(first=0.05, max=0.2),
    ) as c:
        yield c


@pytest.fixture(autouse=True)
def _callback_logs(caplog):
    caplog.set_level(logging.INFO, logger="atomscale_bluesky.callback")
