"""Session-wide test set-up: loopback-only EPICS on free ports, before any CA library loads."""

from __future__ import annotations

import os

import pytest

from atomscale_bluesky.sim import epics_env

# Set before pyepics/caproto/ophyd create a CA context; child processes (IOCs) inherit it.
_SESSION_EPICS = epics_env.loopback_env()
epics_env.apply(_SESSION_EPICS)
os.environ.setdefault("OPHYD_CONTROL_LAYER", "pyepics")
os.environ["NO_PROXY"] = "127.0.0.1,localhost"
os.environ["no_proxy"] = "127.0.0.1,localhost"
for _proxy in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
    os.environ.pop(_proxy, None)

pytest_plugins = ["plugins.server_fixtures", "plugins.client_fixtures", "plugins.ioc_fixtures"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Long end-to-end tests (marked ``slow``) first, the rest after, each in collection order.

    Under ``make test``'s pytest-xdist workers the short tests then fill in behind the long ones,
    instead of one worker finishing a long run alone at the end. The order is the same in every
    worker (xdist requires it) and every test still runs.
    """
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
