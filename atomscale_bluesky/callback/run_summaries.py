"""The finished runs' summaries: published by finalizer threads, waited for by the user."""

from __future__ import annotations

import collections
import threading
import time

from atomscale_bluesky.callback.summary import RunSummary

__all__ = ["RunSummaries"]

LEFT_OUT_KEPT = 1000  # runs left out that wait() still recognises


class RunSummaries:
    """``items`` is the public ``callback.summaries`` list, appended in finalize order.

    A run's summary is published once every stream of the run is finalized (its chunks were
    acknowledged, or the drain timeout passed and the rest waits in the spool); :meth:`wait`
    blocks until then.
    """

    def __init__(self) -> None:
        self.items: list[RunSummary] = []
        self._changed = threading.Condition()
        self._latest_start: str | None = None
        self._left_out: collections.deque[str] = collections.deque(maxlen=LEFT_OUT_KEPT)

    def started(self, run_uid: str) -> None:
        """Note the latest run started (what ``wait()`` without a uid waits for)."""
        with self._changed:
            self._latest_start = run_uid

    @property
    def latest_start(self) -> str | None:
        """The uid of the latest run started through the callback (None before any)."""
        with self._changed:
            return self._latest_start

    def left_out(self, run_uid: str) -> None:
        """Note a run that is not uploaded: it will have no summary to wait for."""
        with self._changed:
            self._left_out.append(run_uid)
            self._changed.notify_all()

    def publish(self, summary: RunSummary) -> None:
        with self._changed:
            self.items.append(summary)
            self._changed.notify_all()

    def wait(self, run_uid: str | None, timeout: float | None) -> RunSummary:
        """The summary of ``run_uid`` (None: the latest run started), once it is published."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._changed:
            uid = run_uid or self._latest_start
            if uid is None:
                raise LookupError("no run has started through this callback yet")
            while True:
                found = next((s for s in reversed(self.items) if s.run_uid == uid), None)
                if found is not None:
                    return found
                if uid in self._left_out:
                    raise LookupError(
                        f"run {uid[:8]} was not uploaded (the atomscale start key or the run "
                        "filter left it out): it has no summary"
                    )
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise TimeoutError(
                        f"run {uid[:8]} was not finalized within {timeout:g} s: its streams are "
                        "still uploading (see callback.counters and callback.client.status()); "
                        "wait again or call callback.flush()"
                    )
                self._changed.wait(left)
