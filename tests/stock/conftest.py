"""Fixtures for the stock-device tests: a camera IOC of their own, a local server and a client."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from plugins.ioc_fixtures import ca_write, reset_camera

from atomscale_bluesky.client import AtomscaleClient, Backoff


@pytest.fixture
def stock_camera(camera_ioc: Any) -> Iterator[Any]:
    """The session's camera IOC (RHEED:, 640x480 Mono8, 30 fps), reset and idle before and after.

    pyepics (ophyd's control layer) reaches only the session's CA port, so stock ophyd devices
    use this IOC rather than one of their own."""
    reset_camera(camera_ioc.prefix)
    ca_write(camera_ioc.prefix + "HDF1:Capture", 0)
    yield camera_ioc
    ca_write(camera_ioc.prefix + "HDF1:Capture", 0)
    ca_write(camera_ioc.prefix + "HDF1:EnableCallbacks", 0)
    reset_camera(camera_ioc.prefix)


@pytest.fixture
def client(local_server: Any, tmp_path: Any) -> Iterator[AtomscaleClient]:
    """A client without clock correction, so stored times equal the hardware timestamps."""
    with AtomscaleClient(
        api_key=local_server.api_key,
        endpoint=local_server.url,
        spool_dir=tmp_path / "spool",
        clock_sync=False,
        upload_workers=2,
        backoff=Backoff(first=0.05, max=0.2),
    ) as c:
        yield c


@pytest.fixture(autouse=True)
def _callback_logs(caplog: Any) -> None:
    caplog.set_level(logging.INFO, logger="atomscale_bluesky.callback")
