"""Which runs this consumer has seen begin and which are entirely in its spool (a JSON file).

After a restart the bus redelivers everything after the last acknowledgement. A run the ledger
lists as spooled was handled completely (the process died between spooling and acknowledging):
its replayed documents are skipped. A run listed as started but not spooled was cut by the
crash: it is handled again from its start, and its frames already spooled by the earlier process
are reported as duplicates.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

__all__ = ["RunLedger"]

logger = logging.getLogger(__name__)

KEEP_RUNS = 10_000


class RunLedger:
    """Run uids in two states, ``started`` and ``spooled``, rewritten atomically on each change."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._runs: dict[str, str] = {}
        try:
            loaded = json.loads(path.read_text())
            if isinstance(loaded, dict):
                self._runs = {str(k): str(v) for k, v in loaded.items()}
        except FileNotFoundError:
            pass
        except (OSError, ValueError) as exc:
            logger.warning("run ledger %s unreadable (%s): starting an empty one", path, exc)

    def state(self, uid: str) -> str | None:
        """``"started"``, ``"spooled"`` or None for a run never seen."""
        return self._runs.get(uid)

    def started(self, uid: str) -> None:
        self._set(uid, "started")

    def spooled(self, uid: str) -> None:
        self._set(uid, "spooled")

    def _set(self, uid: str, state: str) -> None:
        self._runs.pop(uid, None)
        self._runs[uid] = state
        while len(self._runs) > KEEP_RUNS:
            self._runs.pop(next(iter(self._runs)))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_name(self.path.name + ".tmp")
        with open(partial, "w") as out:
            json.dump(self._runs, out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(partial, self.path)
