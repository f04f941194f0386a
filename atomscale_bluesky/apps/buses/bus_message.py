"""What every bus hands the consumer loop: documents with the position that acknowledges them."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["BusDocument", "BusSource", "LaneLost"]


class LaneLost(RuntimeError):
    """The bus gave a lane this consumer reads to another consumer (a group rebalance, a lease
    taken over)."""


@dataclass(frozen=True)
class BusDocument:
    """One (name, doc) pair read from a bus.

    ``lane`` is the unit the bus orders and acknowledges in (a Kafka partition, a JetStream
    consumer); ``position`` is what :meth:`BusSource.commit` takes to acknowledge this message
    and every earlier one of its lane.
    """

    name: str
    doc: Mapping[str, Any]
    lane: Hashable
    position: Any


class BusSource(Protocol):
    """A bus connection: receives documents in order per lane and acknowledges positions."""

    description: str

    def receive(self, timeout: float) -> Sequence[BusDocument]:
        """The next documents (possibly none after ``timeout`` seconds); never raises for a
        broker that is away, it reconnects."""
        ...

    def commit(self, position: Any) -> None:
        """Acknowledge ``position`` and everything before it in its lane."""
        ...

    def close(self) -> None: ...
