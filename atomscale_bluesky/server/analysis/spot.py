"""Finding the specular spot in the first frames of a stream and following it frame by frame.

The spot is the most compact bright feature: the peak of a difference of box filters (a small
box minus a large one) of the mean of the first frames, which favours a round spot over streaks,
the diffuse background and the broad glow of the direct beam. After that, each batch of frames
re-centres the window on the brightest point near the last position (moving at most one window
half-width per batch), so a slowly drifting spot stays inside it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Spot", "SpotTracker", "find_spot"]


@dataclass(frozen=True)
class Spot:
    """The window the specular intensity is read from: centre row/column and half-width (px)."""

    row: int
    col: int
    half: int

    def window(self, height: int, width: int) -> tuple[slice, slice]:
        return (
            slice(max(0, self.row - self.half), min(height, self.row + self.half + 1)),
            slice(max(0, self.col - self.half), min(width, self.col + self.half + 1)),
        )


def _box(image: np.ndarray, size: int) -> np.ndarray:
    """Mean over a size x size box around each pixel (edges padded by reflection)."""
    pad = size // 2
    padded = np.pad(image, pad, mode="reflect")
    c = np.cumsum(np.cumsum(padded, axis=0), axis=1)
    c = np.pad(c, ((1, 0), (1, 0)))
    h, w = image.shape
    total = c[size : size + h, size : size + w] - c[:h, size : size + w]
    total = total - c[size : size + h, :w] + c[:h, :w]
    return total / float(size * size)


def default_half(height: int, width: int) -> int:
    """Window half-width for a frame size: 7 px at 480 rows, never below 2."""
    return max(2, round(min(height, width) / 64))


def find_spot(frames: np.ndarray, half: int | None = None) -> Spot:
    """The specular spot in ``frames`` (N, H, W): the peak of small-box minus large-box means."""
    image = np.asarray(frames, dtype=np.float32).mean(axis=0)
    h, w = image.shape
    half = default_half(h, w) if half is None else half
    small = max(3, half | 1)
    large = max(small + 2, (6 * half) | 1)
    if large >= min(h, w):
        large = max(3, (min(h, w) - 1) | 1) - 2
        small = max(1, min(small, large - 2))
    contrast = _box(image, small) - _box(image, large)
    row, col = np.unravel_index(int(np.argmax(contrast)), contrast.shape)
    return Spot(int(row), int(col), half)


class SpotTracker:
    """Specular intensity per frame: the spot is found in the first frames, then followed."""

    def __init__(self, *, warmup_frames: int = 10, half: int | None = None) -> None:
        self.warmup_frames = warmup_frames
        self.half = half
        self.spot: Spot | None = None

    def intensities(self, frames: np.ndarray, full_scale: float = 255.0) -> np.ndarray:
        """Mean window intensity of each frame of ``frames`` (N, H, W), as a fraction of full scale."""
        n, h, w = frames.shape
        if self.spot is None:
            self.spot = find_spot(frames[: self.warmup_frames], self.half)
        else:
            self.spot = self._recentre(frames, self.spot)
        rows, cols = self.spot.window(h, w)
        roi = frames[:, rows, cols]
        return roi.reshape(n, -1).mean(axis=1, dtype=np.float64) / full_scale

    @staticmethod
    def _recentre(frames: np.ndarray, spot: Spot) -> Spot:
        """Move the window to the brightest (smoothed) point within one half-width of it."""
        _, h, w = frames.shape
        reach = 2 * spot.half
        r0, r1 = max(0, spot.row - reach), min(h, spot.row + reach + 1)
        c0, c1 = max(0, spot.col - reach), min(w, spot.col + reach + 1)
        region = frames[:, r0:r1, c0:c1].mean(axis=0, dtype=np.float32)
        if min(region.shape) < 3:
            return spot
        smooth = _box(region, 3)
        peak_row, peak_col = np.unravel_index(int(np.argmax(smooth)), smooth.shape)
        row = min(max(int(peak_row) + r0, spot.row - spot.half), spot.row + spot.half)
        col = min(max(int(peak_col) + c0, spot.col - spot.half), spot.col + spot.half)
        return Spot(row, col, spot.half)
