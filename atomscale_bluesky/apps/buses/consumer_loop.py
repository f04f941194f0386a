"""The loop every bus shares: documents to the callback, acknowledgements once runs are spooled.

A lane (a Kafka partition, a JetStream consumer) is acknowledged up to a stop document only when
that run's data is in the spool (``callback.spooled()``) and no other run of the lane is still
open, so a crash replays at most the runs that were open and nothing acknowledged is ever
missing. The :class:`RunLedger` recognises runs the crash cut between spooling and acknowledging
(skipped when replayed) and runs it cut in the middle (handled again from their start into the
streams recorded for them, so each chunk rewrites its earlier copy: no duplicates).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from atomscale_bluesky.apps.buses.bus_message import BusDocument, BusSource, LaneLost
from atomscale_bluesky.apps.buses.run_index import RunIndex
from atomscale_bluesky.apps.buses.run_ledger import RunLedger

__all__ = ["ConsumerCounts", "ConsumerLoop", "LaneLost", "SpoolingCallback"]

logger = logging.getLogger(__name__)

RECEIVE_WAIT_S = 0.5


class SpoolingCallback(Protocol):
    """The callback side the loop needs: documents in, a barrier that says they are spooled."""

    def __call__(self, name: str, doc: Mapping[str, Any]) -> Any: ...

    def spooled(self, timeout: float = 600.0) -> bool: ...

    def close(self, timeout: float | None = None) -> None: ...


@dataclass
class ConsumerCounts:
    """What one consumer process did, logged when it stops."""

    documents: int = 0
    runs_spooled: int = 0
    runs_skipped: int = 0
    runs_replayed: int = 0
    documents_skipped: int = 0
    commits: int = 0


@dataclass
class _Lane:
    open_runs: set[str] = field(default_factory=set)
    pending: Any = None


class ConsumerLoop:
    """Feeds one callback from one bus source until ``stop`` is set."""

    def __init__(
        self,
        source: BusSource,
        callback: SpoolingCallback,
        ledger: RunLedger,
        *,
        spool_timeout_s: float = 600.0,
    ) -> None:
        self.source = source
        self.callback = callback
        self.ledger = ledger
        self.spool_timeout_s = spool_timeout_s
        self.counts = ConsumerCounts()
        self._index = RunIndex()
        self._lanes: dict[Hashable, _Lane] = {}
        self._skipping: set[str] = set()

    def run(self, stop: threading.Event) -> None:
        """Consume until ``stop`` is set; then close the callback (open runs end unfinished and
        stay unacknowledged, so the next consumer handles them again).

        Raises :class:`LaneLost` when the bus gave a lane to another consumer, leaving the
        callback open if a run is open: closing would flush that run's partial last chunk, which
        could overwrite the full chunk the new owner writes in its place; the process must end
        at once, as after a crash."""
        logger.info("consuming documents from %s", self.source.description)
        close = True
        try:
            while not stop.is_set():
                batch = self.source.receive(RECEIVE_WAIT_S)
                for message in batch:
                    self._handle(message)
                if not batch:
                    self._commit_idle_lanes()
                self._check_lanes()
        except LaneLost:
            close = not any(lane.open_runs for lane in self._lanes.values())
            raise
        finally:
            if close:
                self.callback.close()
            c = self.counts
            logger.info(
                "consumer stopped: %d document(s), %d run(s) spooled, %d run(s) skipped as "
                "already spooled (%d document(s)), %d run(s) replayed from their start, "
                "%d commit(s)",
                c.documents,
                c.runs_spooled,
                c.runs_skipped,
                c.documents_skipped,
                c.runs_replayed,
                c.commits,
            )

    def _handle(self, message: BusDocument) -> None:
        name, doc = message.name, message.doc
        lane = self._lanes.setdefault(message.lane, _Lane())
        lane.pending = message.position
        self.counts.documents += 1
        run = self._index.run_of(name, doc)
        if name == "start" and run is not None:
            self._on_start(run, lane)
        if run is not None and run in self._skipping:
            self.counts.documents_skipped += 1
            if name == "stop":
                self._skipping.discard(run)
                self._index.forget_run(run)
                self._commit_if_clear(message.lane, lane)
            return
        self.callback(name, doc)
        if name == "stop" and run is not None:
            self._on_stop(run, message.lane, lane)

    def _on_start(self, run: str, lane: _Lane) -> None:
        state = self.ledger.state(run)
        if state == "spooled":
            self._skipping.add(run)
            self.counts.runs_skipped += 1
            logger.warning(
                "run %s redelivered but already in the spool: its documents are skipped", run
            )
            return
        if state == "started":
            self.counts.runs_replayed += 1
            streams = self.ledger.streams(run)
            logger.warning(
                "run %s was cut by a restart: handled again from its start into its %d "
                "recorded stream(s) %s, each chunk rewriting its earlier copy",
                run,
                len(streams),
                sorted(streams.values()),
            )
        self.ledger.started(run)
        lane.open_runs.add(run)

    def _on_stop(self, run: str, lane_key: Hashable, lane: _Lane) -> None:
        if not self.callback.spooled(self.spool_timeout_s):
            logger.error(
                "run %s not in the spool after %.0f s: left unacknowledged (it will be "
                "redelivered)",
                run,
                self.spool_timeout_s,
            )
            return
        self.ledger.spooled(run)
        self.counts.runs_spooled += 1
        lane.open_runs.discard(run)
        self._index.forget_run(run)
        self._commit_if_clear(lane_key, lane)

    def _commit_if_clear(self, lane_key: Hashable, lane: _Lane) -> None:
        if lane.open_runs or lane.pending is None:
            return
        try:
            self.source.commit(lane.pending)
        except Exception as exc:  # noqa: BLE001 - a failed commit only means a redelivery
            logger.warning("could not acknowledge %s on %s: %s", lane.pending, lane_key, exc)
            return
        logger.info("acknowledged %s up to %s", lane_key, lane.pending)
        self.counts.commits += 1
        lane.pending = None

    def _check_lanes(self) -> None:
        lost = getattr(self.source, "lost_lanes", None)
        if not callable(lost):
            return
        for key in lost():
            lane = self._lanes.get(key)
            if lane is not None and lane.open_runs:
                raise LaneLost(
                    f"{key} went to another consumer while run(s) {sorted(lane.open_runs)} "
                    "were open: it handles them again from their start into the same streams"
                )

    def _commit_idle_lanes(self) -> None:
        for key, lane in self._lanes.items():
            self._commit_if_clear(key, lane)
