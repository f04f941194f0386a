"""What kind of session the callback runs in: interactive (a person at a prompt) and a terminal."""

from __future__ import annotations

import sys
from typing import IO, Any

__all__ = ["interactive_session", "is_terminal"]


def interactive_session() -> bool:
    """True in IPython (terminal or Jupyter), ``python -i`` and the plain interactive prompt."""
    if hasattr(sys, "ps1") or sys.flags.interactive:
        return True
    shell = sys.modules.get("IPython")
    get_ipython: Any = getattr(shell, "get_ipython", None)
    return get_ipython is not None and get_ipython() is not None


def is_terminal(stream: IO[str] | None) -> bool:
    """True when ``stream`` is a terminal (a progress bar can redraw itself in place)."""
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except (ValueError, OSError):  # a closed or detached stream
        return False
