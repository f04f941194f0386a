"""Fixtures for streaming clients: ``make_client(server, **options)`` on the test's own spool.

Clients get no clock correction (stored times equal hardware times) and short upload retries
(``client_backoff``, which a suite may override); the library defaults stay the reference's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from atomscale_bluesky.client import AtomscaleClient, Backoff


@pytest.fixture
def client_backoff() -> Backoff:
    """Upload retry delays for tests (the library default is 0.5 s doubling to 30 s)."""
    return Backoff(first=0.1, max=2.0)


@pytest.fixture
def make_client(
    tmp_path: Path, client_backoff: Backoff
) -> Iterator[Callable[..., AtomscaleClient]]:
    """Make clients of a local server; every one made is closed at teardown."""
    made: list[AtomscaleClient] = []

    def make(server: Any, **kwargs: Any) -> AtomscaleClient:
        kwargs.setdefault("spool_dir", tmp_path / "spool")
        kwargs.setdefault("spool_min_free_bytes", 0)
        kwargs.setdefault("backoff", client_backoff)
        kwargs.setdefault("clock_sync", False)
        client = AtomscaleClient(server.api_key, server.url, **kwargs)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()
