"""Which run a bus document belongs to, learnt from the documents themselves."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["RunIndex"]

MAX_ENTRIES = 200_000


class RunIndex:
    """Maps descriptor and resource uids to their run's uid as the documents pass."""

    def __init__(self) -> None:
        self._owner: dict[str, str] = {}

    def run_of(self, name: str, doc: Mapping[str, Any]) -> str | None:
        """The run uid of ``doc`` (learning its own uid when it is a descriptor or resource)."""
        if name == "start":
            return _text(doc.get("uid"))
        if name in ("stop", "descriptor", "resource", "stream_resource"):
            run = _text(doc.get("run_start"))
            if run is not None and name != "stop":
                self._remember(doc.get("uid"), run)
            return run
        if name in ("event", "event_page", "stream_datum"):
            return self._owner.get(str(doc.get("descriptor")))
        if name in ("datum", "datum_page"):
            return self._owner.get(str(doc.get("resource")))
        return None

    def forget_run(self, run: str) -> None:
        """Drop a finished run's descriptors and resources."""
        for key in [k for k, owner in self._owner.items() if owner == run]:
            del self._owner[key]

    def _remember(self, uid: Any, run: str) -> None:
        if uid is None:
            return
        if len(self._owner) >= MAX_ENTRIES:
            self._owner.pop(next(iter(self._owner)))
        self._owner[str(uid)] = run


def _text(value: Any) -> str | None:
    return None if value is None else str(value)
