"""RHEED screen image model: static parts precomputed once, per-frame parts rendered cheaply with numpy.

The geometry follows the small-angle kinematic picture (rheed-physics.md section B): a shadow edge,
a specular spot on the zeroth Laue circle, integer and fractional-order streaks, Kikuchi lines that
slide with the azimuth, diffuse background, phosphor-screen vignetting and shot + read noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

SUPPORTED_BIT_DEPTHS = (8, 10, 12, 14, 16)


@dataclass(frozen=True)
class PatternConfig:
    """What the camera sees: frame size, bit depth, surface symmetry and noise seed."""

    width: int = 640
    height: int = 480
    bit_depth: int = 8
    seed: int = 0
    symmetry: int = 4  # n-fold surface mesh: streaks sharpen every 360/symmetry degrees
    reconstruction: int = 2  # fractional streaks at k/reconstruction, along every other azimuth
    azimuth_width_deg: float = 2.0  # sigma of the high-symmetry azimuth envelope

    def __post_init__(self) -> None:
        if self.width < 16 or self.height < 16:
            raise ValueError(f"frame size must be at least 16x16, got {self.width}x{self.height}")
        if self.bit_depth not in SUPPORTED_BIT_DEPTHS:
            raise ValueError(
                f"bit depth must be one of {SUPPORTED_BIT_DEPTHS}, got {self.bit_depth}"
            )
        if self.symmetry < 1 or self.reconstruction < 1:
            raise ValueError("symmetry and reconstruction must be >= 1")

    @property
    def full_scale(self) -> int:
        return (1 << self.bit_depth) - 1

    @property
    def numpy_dtype(self) -> type[np.unsignedinteger]:
        return np.uint8 if self.bit_depth == 8 else np.uint16


@dataclass(frozen=True)
class Rod:
    """One diffraction rod on the screen: horizontal order, height above the horizon, weight."""

    order: float  # in units of the integer streak spacing
    height: float  # px above the horizon (on its Laue circle)
    weight: float  # fraction of full scale at the rod centre
    fractional: bool
    sigma_u: float
    sigma_v: float


@dataclass(frozen=True)
class FrameInputs:
    """The time-varying state of one frame (from the growth model)."""

    specular: float  # specular intensity, 1.0 = smooth recovered surface
    azimuth_deg: float
    roughness: float = 0.0  # 0 smooth .. 1 rough


def _gauss(x: np.ndarray, sigma: float) -> np.ndarray:
    return np.exp(-0.5 * (x / sigma) ** 2).astype(np.float32)


class RheedPattern:
    """Renders RHEED frames for a :class:`PatternConfig`; per-frame cost is a dozen array operations."""

    def __init__(self, config: PatternConfig) -> None:
        self.config = config
        w, h = config.width, config.height
        self.scale = h / 480.0
        self.u0 = w / 2.0 + 0.013 * w
        self.horizon = 0.80 * h  # row of the shadow edge; the pattern sits above it
        self.specular_height = 0.25 * h  # radius of the zeroth Laue circle
        self.spacing = 0.14 * h  # integer streak spacing (px)
        self.kikuchi_px_per_deg = 0.006 * w
        self._rng = np.random.default_rng(config.seed)
        fs = float(config.full_scale)
        self._fs = fs
        # noise: variance = gain*signal + read^2 (in output DN), scaled from an 8-bit camera
        self._gain = 0.08 * fs / 255.0
        self._read_var = (1.3 * fs / 255.0) ** 2
        self._dark = 3.0 * fs / 255.0
        self.rods = self._make_rods()
        self._background = self._make_background()
        self._kikuchi, self._kikuchi_period = self._make_kikuchi()
        self._noise_pad = 32
        self._noise = self._rng.standard_normal(
            (4, h + self._noise_pad, w + self._noise_pad), dtype=np.float32
        )
        self._buf = np.empty((h, w), np.float32)
        self._tmp = np.empty((h, w), np.float32)

    # ---- static parts -------------------------------------------------------------------------
    def _rows_cols(self) -> tuple[np.ndarray, np.ndarray]:
        h, w = self.config.height, self.config.width
        return (
            np.arange(h, dtype=np.float32)[:, None],
            np.arange(w, dtype=np.float32)[None, :],
        )

    def _shadow(self, rows: np.ndarray) -> np.ndarray:
        """S(v): 1 above the shadow edge, ~0 below; w_edge about 3 px."""
        v = self.horizon - rows
        return (1.0 / (1.0 + np.exp(-v / (3.0 * self.scale)))).astype(np.float32)

    def _make_rods(self) -> list[Rod]:
        r0 = self.specular_height
        r1 = 1.9 * r0  # first Laue zone
        s = self.scale
        rods: list[Rod] = []
        m = self.config.reconstruction
        for k in range(-5 * m, 5 * m + 1):
            order = k / m
            if order == 0:
                continue
            fractional = k % m != 0
            x = abs(order) * self.spacing
            if x < 0.92 * r0:
                height, weight = math.sqrt(r0**2 - x**2), 0.85
            elif x < 0.95 * r1:
                height, weight = math.sqrt(r1**2 - x**2), 0.35
            else:
                continue
            if fractional:
                weight *= 0.3
            weight *= 1.0 / (1.0 + 0.15 * abs(order))
            rods.append(Rod(order, height, weight, fractional, 2.2 * s, 26.0 * s))
        return rods

    def _make_background(self) -> np.ndarray:
        """Diffuse background + halo + vignetting + dark offset, times the shadow edge (DN)."""
        rows, cols = self._rows_cols()
        w, h = self.config.width, self.config.height
        v = self.horizon - rows
        shadow = self._shadow(rows)
        diffuse = (
            0.24
            * np.exp(-np.clip(v, 0, None) / (0.45 * h))
            * (1.0 - 0.5 * ((cols - self.u0) / w) ** 2)
        )
        spec_v = self.horizon - self.specular_height
        r2 = (cols - self.u0) ** 2 + (rows - spec_v) ** 2
        halo = 0.10 * np.exp(-r2 / (2 * (45.0 * self.scale) ** 2))
        # a faint glow of the (hidden) direct beam just under the shadow edge
        glow = 0.25 * np.exp(
            -((cols - self.u0) ** 2 + (rows - h * 0.99) ** 2) / (2 * (25 * self.scale) ** 2)
        )
        rs = 0.62 * max(w, h)
        rc = np.sqrt((cols - w / 2) ** 2 + (rows - 0.5 * h) ** 2)
        vignette = 1.0 / (1.0 + (rc / rs) ** 8)
        bg = ((diffuse + halo) * shadow + glow) * vignette * self._fs + self._dark
        return np.ascontiguousarray(bg, dtype=np.float32)

    def _make_kikuchi(self) -> tuple[np.ndarray, int]:
        """A texture of Kikuchi line pairs, periodic in u with one symmetry period of azimuth."""
        rows, _ = self._rows_cols()
        w, h = self.config.width, self.config.height
        period = max(8, int(round(self.kikuchi_px_per_deg * 360.0 / self.config.symmetry)))
        cols = np.arange(w + period, dtype=np.float32)[None, :]
        shadow = self._shadow(rows)
        v = np.clip(self.horizon - rows, 0, None)
        envelope = 0.045 * np.exp(-v / (0.6 * h)) * shadow
        tex = np.zeros((h, w + period), np.float32)
        rng = np.random.default_rng(self.config.seed + 1)
        width = 1.6 * self.scale
        for _ in range(4):
            centre = float(rng.uniform(0, period))
            angle = math.radians(float(rng.uniform(-65, 65)))
            sign = 1.0 if rng.uniform() < 0.6 else -1.0
            gap = float(rng.uniform(6, 14)) * self.scale
            dx, dy = math.sin(angle), -math.cos(angle)
            for rep in range(-2, (w + period) // period + 3):
                c = centre + rep * period
                dist = np.abs((cols - c) * dy - (rows - self.horizon) * dx)
                tex += sign * np.exp(-0.5 * (dist / width) ** 2)
                dist2 = np.abs((cols - c - gap) * dy - (rows - self.horizon) * dx)
                tex -= 0.6 * sign * np.exp(-0.5 * (dist2 / width) ** 2)
        tex *= envelope * self._fs
        return np.ascontiguousarray(tex, dtype=np.float32), period

    # ---- per frame ----------------------------------------------------------------------------
    def envelope(self, azimuth_deg: float, fold: int | None = None) -> float:
        """E(phi): 1 at a high-symmetry azimuth, falling as a Gaussian of width azimuth_width_deg."""
        n = self.config.symmetry if fold is None else fold
        step = 360.0 / n
        delta = (azimuth_deg + step / 2.0) % step - step / 2.0
        return math.exp(-0.5 * (delta / self.config.azimuth_width_deg) ** 2)

    def _add_window(
        self, v_centre: float, u_centre: float, su: float, sv: float, amp: float
    ) -> None:
        h, w = self.config.height, self.config.width
        y_c = self.horizon - v_centre
        y0, y1 = max(0, int(y_c - 3.5 * sv)), min(h, int(y_c + 3.5 * sv) + 1)
        x0, x1 = max(0, int(u_centre - 3.5 * su)), min(w, int(u_centre + 3.5 * su) + 1)
        if y0 >= y1 or x0 >= x1 or amp == 0.0:
            return
        gv = _gauss(np.arange(y0, y1, dtype=np.float32) - y_c, sv)
        gu = _gauss(np.arange(x0, x1, dtype=np.float32) - u_centre, su)
        self._buf[y0:y1, x0:x1] += (amp * gv)[:, None] * gu[None, :]

    def render_float(self, inputs: FrameInputs) -> np.ndarray:
        """The noiseless-then-noisy frame in DN as float32 (a view of an internal buffer)."""
        cfg = self.config
        step = 360.0 / cfg.symmetry
        phi = inputs.azimuth_deg % 360.0
        delta = (phi + step / 2.0) % step - step / 2.0
        env = self.envelope(phi)
        env_frac = self.envelope(phi, max(1, cfg.symmetry // 2))  # reconstruction breaks symmetry
        rough = min(max(inputs.roughness, 0.0), 1.0)
        buf, tmp = self._buf, self._tmp
        np.multiply(self._background, 1.0 + 0.4 * rough, out=buf)
        offset = int(round((delta + step) * self.kikuchi_px_per_deg)) % self._kikuchi_period
        np.multiply(self._kikuchi[:, offset : offset + cfg.width], 0.6 + 0.4 * env, out=tmp)
        buf += tmp
        fs = self._fs
        streak_gain = (0.25 + 0.75 * env) * (1.0 - 0.5 * rough) * fs
        shrink = math.cos(math.radians(delta))
        for rod in self.rods:
            amp = rod.weight * streak_gain
            if rod.fractional:
                amp *= env_frac
            u = self.u0 + rod.order * self.spacing * shrink
            self._add_window(rod.height, u, rod.sigma_u * (1 + 0.5 * (1 - env)), rod.sigma_v, amp)
        s = self.scale
        spec = max(inputs.specular, 0.0) * (0.6 + 0.4 * env) * fs
        self._add_window(self.specular_height, self.u0, 3.2 * s, 4.5 * s, 1.25 * spec)
        self._add_window(self.specular_height * 0.8, self.u0, 2.6 * s, 30.0 * s, 0.25 * spec)
        # camera noise: shot (Poisson ~ Gaussian) + read, from a pre-drawn bank at a random offset
        k = int(self._rng.integers(self._noise.shape[0]))
        oy, ox = (int(x) for x in self._rng.integers(self._noise_pad, size=2))
        np.multiply(buf, self._gain, out=tmp)
        np.maximum(tmp, 0.0, out=tmp)
        tmp += self._read_var
        np.sqrt(tmp, out=tmp)
        tmp *= self._noise[k, oy : oy + cfg.height, ox : ox + cfg.width]
        tmp += float(self._rng.uniform(0.0, 1.0))  # dither: no two frames quantise alike
        buf += tmp
        np.clip(buf, 0.0, fs, out=buf)
        return buf

    def render(self, inputs: FrameInputs) -> np.ndarray:
        """One frame as a fresh (H, W) uint8 (8-bit) or uint16 array, clipped at full scale."""
        return self.render_float(inputs).astype(self.config.numpy_dtype)

    def specular_window(self, half: int | None = None) -> tuple[slice, slice]:
        """Rows/cols of a small window centred on the specular spot (for oscillation analysis)."""
        half = max(2, int(round(4 * self.scale))) if half is None else half
        y = int(round(self.horizon - self.specular_height))
        x = int(round(self.u0))
        return slice(y - half, y + half + 1), slice(x - half, x + half + 1)
