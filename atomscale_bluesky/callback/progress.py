"""Optional live progress of the callback: a log line or an updating IPython display."""

from __future__ import annotations

import logging
from typing import Any

from atomscale_bluesky.callback.counters import CallbackCounters
from atomscale_bluesky.callback.summary import count_noun

__all__ = ["ProgressDisplay"]

logger = logging.getLogger(__name__)


class ProgressDisplay:
    """Optional live progress: a log line ("log") or an updating IPython text ("ipython")."""

    def __init__(self, mode: str | None) -> None:
        self.mode = mode
        self._handle: Any = None

    def show(self, counters: CallbackCounters) -> None:
        if self.mode is None:
            return
        text = (
            f"atomscale: {count_noun(counters.frames_pushed, 'frame')} / "
            f"{count_noun(counters.chunks_pushed, 'chunk')} pushed, "
            f"{count_noun(counters.points_pushed, 'point')}, "
            f"queue {count_noun(counters.queue_items, 'item')} ({counters.queue_bytes / 1e6:.1f} MB), "
            f"{count_noun(counters.errors, 'error')}, {counters.dropped_overflow} dropped"
        )
        if self.mode == "ipython" and self._show_ipython(text):
            return
        logger.info(text)

    def _show_ipython(self, text: str) -> bool:
        try:
            from IPython import get_ipython
            from IPython.display import display
        except ImportError:
            return False
        if get_ipython() is None:
            return False
        if self._handle is None:
            self._handle = display(text, display_id=True)
        else:
            self._handle.update(text)
        return True
