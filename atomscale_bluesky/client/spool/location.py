"""Where the spool lives unless the caller says: ``$ATOMSCALE_SPOOL_DIR`` or the user cache."""

from __future__ import annotations

import os
from pathlib import Path

from atomscale_bluesky.settings import load_settings

__all__ = ["SPOOL_DIR_ENV", "default_spool_root"]

SPOOL_DIR_ENV = "ATOMSCALE_SPOOL_DIR"


def default_spool_root() -> Path:
    """``$ATOMSCALE_SPOOL_DIR`` (or ``$ATOMSCALE_BLUESKY_SPOOL_DIR``), else
    ``<user cache>/atomscale-bluesky/spool``.

    Deliberately not the official client's folder, so the two never resume each other's files.
    """
    configured = load_settings().spool_dir
    if configured is not None:
        return configured
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "atomscale-bluesky" / "spool"
