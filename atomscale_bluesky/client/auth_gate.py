"""Pausing uploads while the API key is refused (401/403), loudly, and resuming by themselves.

The first refusal closes the gate: one ERROR line names the setting to fix (never the key),
``status()["auth_paused"]`` turns true and ``auth_pauses`` counts the pause. While closed, upload
workers take no new chunks; the requests already under way keep retrying with their backoff and
are the probe: the first request the key gets through again opens the gate. No chunk is failed
or deleted because of a refused key. The seconds spent paused are charged to the streams that
were waiting (``StreamReport.auth_paused_s``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

__all__ = ["AuthGate"]

log = logging.getLogger(__name__)


class AuthGate:
    """Open while the API key works; closed from the first 401/403 until a request succeeds."""

    def __init__(
        self, on_resume: Callable[[float], None], clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._on_resume = on_resume
        self._clock = clock
        self._cond = threading.Condition()
        self._paused_at: float | None = None
        self.pauses = 0
        self.paused_s = 0.0

    @property
    def paused(self) -> bool:
        return self._paused_at is not None

    def pause(self, what: str, error: BaseException) -> None:
        """A request was refused for its key; the first one of a pause logs the error."""
        with self._cond:
            if self._paused_at is not None:
                return
            self._paused_at = self._clock()
            self.pauses += 1
        log.error(
            "the Atomscale endpoint refused the API key (%s: %s); uploads are paused (nothing "
            "is deleted) and resume by themselves once the key works: check ATOMSCALE_API_KEY "
            "(or AS_API_KEY) or the api_key argument",
            what,
            error,
        )

    def resume(self) -> None:
        """A request went through: open the gate (a no-op when it is open)."""
        if self._paused_at is None:
            return
        with self._cond:
            if self._paused_at is None:
                return
            waited = self._clock() - self._paused_at
            self._paused_at = None
            self.paused_s += waited
            self._cond.notify_all()
        log.warning("the API key works again after %.1f s; uploads resume", waited)
        self._on_resume(waited)

    def current_pause_s(self) -> float:
        """Seconds of the pause going on now (0 when open)."""
        at = self._paused_at
        return 0.0 if at is None else max(self._clock() - at, 0.0)

    def wait_open(self, stop: threading.Event, timeout: float) -> bool:
        """Wait up to ``timeout`` s for the gate to open; True if it is open."""
        deadline = self._clock() + timeout
        with self._cond:
            while self._paused_at is not None and not stop.is_set():
                remaining = deadline - self._clock()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
        return self._paused_at is None
