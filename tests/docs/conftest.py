"""The docs' world: the simulated IOCs (camera ``RHEED:``, sensors ``GROWTH:``) and one local
server that already holds a streamed run, as after the quickstart."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture(scope="module")
def docs_server(camera_ioc: Any, sensors_ioc: Any, tmp_path_factory: Any) -> Iterator[Any]:
    """A local server holding one run of the simulated camera and sensors (``count_growth``)."""
    from bluesky import RunEngine
    from plugins.ioc_fixtures import reset_camera

    from atomscale_bluesky.callback import AtomscaleCallback
    from atomscale_bluesky.devices import GrowthSensors, RheedCamera, connect_all
    from atomscale_bluesky.plans import count_growth
    from atomscale_bluesky.server.runner import running_server

    reset_camera(camera_ioc.prefix)
    with running_server(data_dir=tmp_path_factory.mktemp("docs-server")) as server:
        rheed = RheedCamera(camera_ioc.prefix, name="rheed")
        growth = GrowthSensors(sensors_ioc.prefix, name="growth")
        connect_all(rheed, growth)
        RE = RunEngine({})
        callback = AtomscaleCallback(api_key=server.api_key, endpoint=server.url, progress=False)
        RE.subscribe(callback)
        RE(count_growth(rheed, growth, 5, md={"sample": "docs wafer"}))
        callback.wait(timeout=120)
        callback.close()
        yield server
