"""The thread that polls an Atomscale stream's analysis results for ``AtomscaleAnalysis``.

It polls every ``interval`` seconds, or at once when poked (a device's ``trigger``), and hands
each outcome to ``on_fetch``; it never runs on the RunEngine's thread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import httpx

from atomscale_bluesky.devices.analysis_results import (
    NO_STREAM,
    ResultsFetch,
    StreamLocator,
    fetch_latest,
)

__all__ = ["ResultsPoller"]

log = logging.getLogger(__name__)


class ResultsPoller:
    """Polls the located stream's results on a daemon thread; ``poke`` asks for a poll now."""

    def __init__(
        self,
        locator: StreamLocator,
        on_fetch: Callable[[str | None, ResultsFetch], None],
        *,
        interval: float = 0.25,
        timeout: float = 10.0,
    ) -> None:
        self._locator = locator
        self._on_fetch = on_fetch
        self.interval = interval
        self._timeout = timeout
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._waiters: list[Callable[[], None]] = []
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Poll on a thread of its own (a new one when the last was asked to stop)."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive() and not self._stop.is_set():
                return
            self._stop = threading.Event()  # each thread has its own: a stopping one ends alone
            self._thread = threading.Thread(
                target=self._run, args=(self._stop,), name="atomscale-analysis-poller", daemon=True
            )
            self._thread.start()

    def stop(self, timeout: float = 0.0) -> None:
        """Ask the thread to end after its current poll; wait for it up to ``timeout`` seconds
        (default: not at all, since ``unstage`` calls this on the RunEngine's thread)."""
        with self._lock:
            self._stop.set()
            thread = self._thread
        self._wake.set()
        if timeout > 0 and thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def poke(self, done: Callable[[], None]) -> None:
        """Poll as soon as possible and call ``done`` after that poll (from the poller thread)."""
        with self._lock:
            self._waiters.append(done)
        self.start()
        self._wake.set()

    def _run(self, stop: threading.Event) -> None:
        with httpx.Client(timeout=self._timeout, follow_redirects=False) as http:
            while not stop.is_set():
                with self._lock:
                    waiters, self._waiters = self._waiters, []
                self._poll_once(http)
                for done in waiters:
                    done()
                self._wake.wait(self.interval)
                self._wake.clear()
            # the triggers still waiting are answered here, unless a newer thread polls for them
            waiters = []
            with self._lock:
                if self._stop is stop:
                    waiters, self._waiters = self._waiters, []
            for done in waiters:
                done()

    def _poll_once(self, http: httpx.Client) -> None:
        try:
            data_id = self._locator.data_id()
            source = self._locator.source()
            if data_id is None or source is None:
                fetch = ResultsFetch(None, NO_STREAM)
            else:
                fetch = fetch_latest(http, source, data_id)
            self._on_fetch(data_id, fetch)
        except Exception as exc:  # noqa: BLE001 - the poller keeps going
            log.warning("polling analysis results failed: %s", exc)
