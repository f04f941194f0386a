"""``NPY_SEQ``: one ``.npy`` file per datum, ``<path>_<index>.npy`` (ophyd.sim's registry-backed
detectors write them)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from atomscale_bluesky.callback.handlers.errors import ExternalNotReady

__all__ = ["NumpySeqHandler"]


class NumpySeqHandler:
    specs = {"NPY_SEQ"}

    def __init__(self, filename: str, root: str = "", **_: Any) -> None:
        self._stem = os.path.join(root, filename)

    def path(self, index: int) -> Path:
        return Path(f"{self._stem}_{int(index)}.npy")

    def __call__(self, index: int = 0, **_: Any) -> np.ndarray:
        path = self.path(index)
        if not path.exists():
            raise ExternalNotReady(f"file {path} does not exist (yet)", missing=True)
        try:
            return np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:  # written, not flushed yet
            raise ExternalNotReady(f"{path} cannot be read yet: {exc}") from exc

    def close(self) -> None:
        """Nothing is held open between reads."""
