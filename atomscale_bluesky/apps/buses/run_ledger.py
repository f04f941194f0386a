"""Which runs a consumer has begun and finished spooling, and the remote streams each run writes to.

After a crash the bus redelivers everything after the last acknowledgement. A run the ledger
lists as spooled was handled completely (the process died between spooling and acknowledging):
its replayed documents are skipped. A run listed as started was cut by the crash: it is handled
again from its start into the streams recorded for it (:class:`RunStreams` of the callback), and
since its chunks are cut the same way again (by hardware time, points by count), each rewrites its
earlier copy on the server: every frame and point ends there once.

The ledger lives in a :class:`LedgerStore`: a JSON file beside the spool (:class:`FileStore`; a
standby on the same host, or sharing the file, reads it) or the broker itself (a JetStream
key-value bucket, :class:`~atomscale_bluesky.apps.buses.nats_bus.NatsLedgerStore`; a Kafka
topic, :class:`~atomscale_bluesky.apps.buses.kafka_ledger.KafkaLedgerStore`), which a standby
on another host reads.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import Any, Protocol

__all__ = ["FileStore", "LedgerStore", "RunLedger"]

logger = logging.getLogger(__name__)

KEEP_RUNS = 10_000


class LedgerStore(Protocol):
    """Durable run entries by run uid: ``{"state": ..., "streams": {key: data_id}}``."""

    description: str

    def get(self, uid: str) -> dict[str, Any] | None: ...

    def put(self, uid: str, entry: dict[str, Any]) -> None: ...


class FileStore:
    """Entries in one JSON file, read afresh on each lookup, rewritten atomically on each change."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.description = str(path)

    def _load(self) -> dict[str, dict[str, Any]]:
        try:
            loaded = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            logger.warning("run ledger %s unreadable (%s): starting an empty one", self.path, exc)
            return {}
        if not isinstance(loaded, dict):
            return {}
        return {str(k): _entry(v) for k, v in loaded.items()}

    def get(self, uid: str) -> dict[str, Any] | None:
        return self._load().get(uid)

    def put(self, uid: str, entry: dict[str, Any]) -> None:
        runs = self._load()
        runs.pop(uid, None)
        runs[uid] = entry
        while len(runs) > KEEP_RUNS:
            runs.pop(next(iter(runs)))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_name(self.path.name + ".tmp")
        with open(partial, "w") as out:
            json.dump(runs, out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(partial, self.path)


def _entry(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        streams = value.get("streams")
        return {
            "state": str(value.get("state")),
            "streams": dict(streams) if isinstance(streams, dict) else {},
        }
    return {"state": str(value), "streams": {}}


class RunLedger:
    """Run states (``started``, ``spooled``) and each run's streams, in a store; thread-safe (the
    callback's worker records streams while the consumer loop records states)."""

    def __init__(self, store: LedgerStore) -> None:
        self.store = store
        self._runs: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def state(self, uid: str) -> str | None:
        """``"started"``, ``"spooled"`` or None for a run never seen (read from the store)."""
        with self._lock:
            entry = self.store.get(uid)
            if entry is None:
                self._runs.pop(uid, None)
                return None
            self._runs[uid] = _entry(entry)
            return str(self._runs[uid]["state"])

    def streams(self, uid: str) -> dict[str, str]:
        """The streams recorded for a run (as last read or written)."""
        with self._lock:
            return dict(self._runs.get(uid, {}).get("streams", {}))

    def started(self, uid: str) -> None:
        self._update(uid, state="started")

    def spooled(self, uid: str) -> None:
        self._update(uid, state="spooled")
        with self._lock:
            self._runs.pop(uid, None)

    # -- RunStreams (called on the callback's worker thread) -------------------------------------

    def data_id_for(self, run_uid: str, key: str) -> str | None:
        with self._lock:
            found = self._runs.get(run_uid, {}).get("streams", {}).get(key)
        return None if found is None else str(found)

    def opened(self, run_uid: str, key: str, data_id: str) -> None:
        """Record a run's stream, unless the run is spooled already: a stream the server created
        late must not bring a spooled run back as ``started`` (it would be handled again)."""
        self._update(run_uid, stream=(key, data_id))

    def _update(
        self, uid: str, *, state: str | None = None, stream: tuple[str, str] | None = None
    ) -> None:
        with self._lock:
            if state is None and uid not in self._runs:
                logger.debug("run %s is not open: its stream %s is not recorded", uid, stream)
                return
            entry = self._runs.setdefault(uid, {"state": "started", "streams": {}})
            if state is not None:
                entry["state"] = state
            if stream is not None:
                entry["streams"][stream[0]] = stream[1]
            snapshot = {"state": entry["state"], "streams": dict(entry["streams"])}
            try:
                self.store.put(uid, snapshot)
            except Exception as exc:  # noqa: BLE001 - a lost entry means duplicates, not loss
                logger.error("could not record run %s in %s: %s", uid, self.store.description, exc)
