"""Whether a run is uploaded: the start document's ``atomscale`` key, then the user's filter.

``RE(plan, atomscale=False)`` (or ``atomscale={"upload": False}``) keeps a run, such as an
alignment scan on a shared RunEngine, off Atomscale; ``atomscale=True`` uploads it even when the
constructor's ``run_filter`` would not. Without the key, ``run_filter(start)`` decides (default:
every run is uploaded).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from atomscale_bluesky.settings import FALSE_WORDS, TRUE_WORDS

__all__ = ["START_KEY", "run_choice"]

START_KEY = "atomscale"


def _declared(start: Mapping[str, Any]) -> bool | None:
    """What the start document says: True, False, or None when it says nothing usable (strings
    follow the settings' yes/no rule)."""
    value = start.get(START_KEY)
    if isinstance(value, Mapping):
        value = value.get("upload")
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in FALSE_WORDS:
        return False
    if isinstance(value, str) and value.strip().lower() in TRUE_WORDS:
        return True
    return None


def run_choice(
    start: Mapping[str, Any], run_filter: Callable[[Mapping[str, Any]], bool] | None
) -> tuple[bool, str]:
    """(upload?, why) for a start document; a filter that raises uploads the run (said why)."""
    declared = _declared(start)
    if declared is not None:
        return declared, f"start document {START_KEY}={start.get(START_KEY)!r}"
    if run_filter is None:
        return True, "every run is uploaded"
    try:
        chosen = bool(run_filter(start))
    except Exception as exc:  # noqa: BLE001 - a user's filter must not lose the run
        return True, f"run_filter raised {exc!r}; uploading"
    return chosen, "run_filter"
