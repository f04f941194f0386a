"""The local server's notion of "now": the host's clock plus an offset tests can advance.

Moving the server's clock forward lets a test show two hours of silence on a stream (and the
backend closing it as ``stream_error``) without waiting two hours.
"""

from __future__ import annotations

import threading
import time

__all__ = ["ServerClock"]


class ServerClock:
    """Unix time in seconds, offset by what was advanced; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._offset_s = 0.0

    def now(self) -> float:
        with self._lock:
            return time.time() + self._offset_s

    def advance(self, seconds: float) -> float:
        """Move the clock forward by ``seconds`` (>= 0); returns the new offset."""
        if not seconds >= 0:
            raise ValueError("the server clock only moves forward")
        with self._lock:
            self._offset_s += seconds
            return self._offset_s

    @property
    def offset_s(self) -> float:
        with self._lock:
            return self._offset_s
