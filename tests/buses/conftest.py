from collections.abc import Iterator

import pytest
from plugins.bus_fixtures import kafka_broker, nats_server  # noqa: F401 - fixtures

from .bus_runs import STARTED


@pytest.fixture(autouse=True)
def stop_consumers() -> Iterator[None]:
    """Kill every consumer process a test left running (a failed assertion skips its stop)."""
    yield
    while STARTED:
        consumer = STARTED.pop()
        if consumer.process.poll() is None:
            consumer.kill()
