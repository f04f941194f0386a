"""Live progress of the callback: one tqdm line updated in place, and end-of-run text printed
cleanly around it.

The worker thread updates the line while runs are open or finalizing; finalizer threads print
each run's summary through :meth:`ProgressDisplay.write`, which clears the line, prints and
redraws it, so the two never garble each other. The same display serves the demo.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import IO, Any

from atomscale_bluesky.callback.counters import CallbackCounters
from atomscale_bluesky.callback.session import interactive_session, is_terminal
from atomscale_bluesky.callback.summary import count_noun

__all__ = ["PROGRESS_MODES", "ProgressDisplay", "ProgressLine", "resolve_progress"]

logger = logging.getLogger(__name__)

# "bar": a tqdm line redrawn in place; "lines": the same text, one line each interval (logs,
# pipes); "log": an INFO record on this module's logger; None: off
PROGRESS_MODES = ("bar", "lines", "log", None)


def resolve_progress(progress: bool | str | None, stream: IO[str] | None = None) -> str | None:
    """The progress mode for the constructor's ``progress``: None means a bar in an interactive
    session on a terminal (or a Jupyter kernel) and nothing otherwise; True means a bar."""
    if progress is None:
        stream = sys.stderr if stream is None else stream
        interactive = interactive_session() and (is_terminal(stream) or _in_kernel())
        return "bar" if interactive and _have_tqdm() else None
    if progress in (True, "bar") and not _have_tqdm():
        raise ValueError("the progress line needs tqdm: pip install 'atomscale-bluesky[devices]'")
    if progress is True:
        return "bar"
    if progress is False:
        return None
    if progress not in PROGRESS_MODES:
        raise ValueError(
            f"progress must be True, False, None, 'bar', 'lines' or 'log', not {progress!r}"
        )
    return progress


def _have_tqdm() -> bool:
    return importlib.util.find_spec("tqdm") is not None


def _in_kernel() -> bool:
    return "ipykernel" in sys.modules


@dataclass(frozen=True)
class ProgressLine:
    """What the progress line shows: data taken so far, chunk uploads and how far they lag."""

    frames: int
    points: int
    chunks_uploaded: int
    chunks_pending: int
    lag_s: float
    errors: int
    dropped: int

    @classmethod
    def read(cls, counters: CallbackCounters, status: Mapping[str, Any] | None) -> ProgressLine:
        """From the callback's counters and the client's spool status (None before a client)."""
        status = status or {}
        oldest = status.get("oldest_pending_ms")
        lag = max(0.0, time.time() - oldest / 1000.0) if oldest else 0.0
        return cls(
            frames=counters.frames_pushed,
            points=counters.points_pushed,
            chunks_uploaded=int(status.get("chunks_uploaded") or 0),
            chunks_pending=int(status.get("chunks_pending") or 0),
            lag_s=lag,
            errors=counters.errors,
            dropped=counters.dropped_overflow,
        )

    def text(self) -> str:
        text = (
            f"{count_noun(self.frames, 'frame')}, {count_noun(self.points, 'point')} spooled | "
            f"chunks {self.chunks_uploaded} uploaded, {self.chunks_pending} pending | "
            f"upload lag {self.lag_s:.1f} s"
        )
        if self.errors or self.dropped:
            text += f" | {count_noun(self.errors, 'error')}, {self.dropped} dropped"
        return text


class ProgressDisplay:
    """The live progress line and the end-of-run text, thread-safe.

    ``update`` is called by the worker thread; ``write`` by finalizer threads; ``close`` by
    whoever ends the session. Output goes to ``stream`` (the bar) and ``out`` (text).
    """

    def __init__(
        self, mode: str | None, stream: IO[str] | None = None, out: IO[str] | None = None
    ) -> None:
        self.mode = mode
        self._stream = stream
        self._out = out
        self._lock = threading.Lock()
        self._bar: Any = None
        self.last_line: ProgressLine | None = None  # what was shown last

    def update(self, line: ProgressLine, active: Callable[[], bool] = lambda: True) -> None:
        """Show ``line`` (redraw the bar, print a line, or log it, by mode) if ``active()``;
        else take the bar away. ``active`` is asked under the display's lock, so a summary
        printed meanwhile is never followed by a stale line."""
        if self.mode is None:
            return
        text = line.text()
        with self._lock:
            if not active():
                if self._bar is not None:
                    self._bar.close()
                    self._bar = None
                return
            self.last_line = line
            if self.mode == "bar":
                self._draw(text)
            elif self.mode == "lines":
                print(f"atomscale: {text}", file=self._stream or sys.stderr, flush=True)
            else:
                logger.info("atomscale: %s", text)

    def idle(self) -> None:
        """Nothing is uploading any more: take the bar off the screen (a new run draws a new one)."""
        with self._lock:
            if self._bar is not None:
                self._bar.close()
                self._bar = None

    def write(self, text: str) -> None:
        """Print ``text`` (a run's summary) to the session's output, the bar taken away first
        (the next update draws a new one below it while other runs are still uploading)."""
        out = self._out or sys.stdout
        with self._lock:
            if self._bar is not None:
                self._bar.close()
                self._bar = None
            print(text, file=out, flush=True)

    def close(self) -> None:
        self.idle()

    def _draw(self, text: str) -> None:
        if self._bar is None:
            from tqdm.auto import tqdm

            self._bar = tqdm(
                total=None,
                file=self._stream or sys.stderr,
                bar_format="atomscale: {desc}",
                dynamic_ncols=True,
                leave=False,
                mininterval=0,
            )
        self._bar.set_description_str(text, refresh=True)
