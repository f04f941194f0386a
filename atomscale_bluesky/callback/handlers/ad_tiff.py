"""areaDetector TIFF files, one file per frame named by the plugin's template: ``AD_TIFF``
resources (ophyd) and ``multipart/related;type=image/tiff`` stream resources (ophyd-async)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from atomscale_bluesky.callback.handlers.errors import ExternalNotReady

__all__ = ["AreaDetectorTiffHandler", "TiffSeriesHandler", "read_tiff"]


def read_tiff(path: Path) -> np.ndarray:
    """One TIFF image as an array (tifffile when installed, else Pillow)."""
    if not path.exists():
        raise ExternalNotReady(f"file {path} does not exist (yet)", missing=True)
    try:
        import tifffile
    except ImportError:  # pragma: no cover - depends on the environment
        from PIL import Image

        try:
            with Image.open(path) as image:
                return np.asarray(image)
        except OSError as exc:  # written, not flushed yet
            raise ExternalNotReady(f"{path} cannot be read yet: {exc}") from exc
    try:
        return np.asarray(tifffile.imread(path))
    except (OSError, ValueError) as exc:  # written, not flushed yet
        raise ExternalNotReady(f"{path} cannot be read yet: {exc}") from exc


class AreaDetectorTiffHandler:
    """Point ``i`` is the files ``template % (path, filename, n)`` for ``n`` in
    ``[i*fpp, (i+1)*fpp)``, as areaDetector's TIFF plugin and ophyd's FileStoreTIFF write them."""

    specs = {"AD_TIFF"}

    def __init__(
        self, fpath: str, template: str, filename: str, frame_per_point: int = 1, **_: Any
    ) -> None:
        self._path = os.path.join(fpath, "")
        self._template = template
        self._filename = filename
        self._fpp = max(1, int(frame_per_point or 1))

    def files(self, point_number: int) -> list[Path]:
        first = int(point_number) * self._fpp
        return [
            Path(self._template % (self._path, self._filename, n))
            for n in range(first, first + self._fpp)
        ]

    def __call__(self, point_number: int = 0, **_: Any) -> np.ndarray:
        return np.stack([read_tiff(path) for path in self.files(point_number)])

    def close(self) -> None:
        """Nothing is held open between reads."""


class TiffSeriesHandler:
    """An ophyd-async TIFF stream resource: the directory ``uri``, frame ``i`` in the file
    ``parameters["template"].format(i)``; called with the rows ``[start, stop)``."""

    def __init__(self, directory: str, template: str, **_: Any) -> None:
        self._directory = Path(directory)
        self._template = template

    def __call__(self, start: int, stop: int) -> np.ndarray:
        return np.stack(
            [read_tiff(self._directory / self._template.format(i)) for i in range(start, stop)]
        )

    def close(self) -> None:
        """Nothing is held open between reads."""
