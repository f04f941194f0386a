"""Growth state behind the simulated RHEED pattern: monolayer oscillations, roughening and rotation.

Phenomenological model (rheed-physics.md B.3): with the growth shutter open the specular intensity
follows ``(1 - 0.3 rho) * (1 - A (1 - rho) sin^2(pi * monolayers))``, where ``rho`` (roughness) rises
towards 1 with time constant ``damping_s`` (so the oscillation damps); with the shutter closed the
oscillating term and ``rho`` relax back (recovery). The azimuth integrates the rotation speed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class GrowthParams:
    """Settable growth conditions (all exposed as PVs by the camera IOC)."""

    monolayer_period_s: float = 1.0
    damping_s: float = 20.0
    recovery_s: float = 4.0
    amplitude: float = 0.5
    rotation_rpm: float = 0.0
    shutter_open: bool = False


@dataclass(frozen=True)
class GrowthState:
    """The growth state at one instant, as the pattern renderer needs it."""

    time: float
    specular: float
    azimuth_deg: float
    roughness: float
    monolayers: float
    layer_monolayers: float = (
        0.0  # grown since the shutter last opened (the truth to check against)
    )


class GrowthModel:
    """Integrates the growth state exactly between the (irregular) times it is asked about."""

    def __init__(
        self, params: GrowthParams | None = None, *, t0: float = 0.0, azimuth_deg: float = 0.0
    ):
        self.params = params or GrowthParams()
        self._t = t0
        self._azimuth = azimuth_deg % 360.0
        self._monolayers = 0.0
        self._layer_start = 0.0
        self._rho = 0.0
        self._dip = 0.0  # the oscillating term, frozen and relaxing while the shutter is closed

    def set_azimuth(self, azimuth_deg: float) -> None:
        self._azimuth = azimuth_deg % 360.0

    def set_shutter(self, is_open: bool, t: float) -> None:
        """Open or close the growth shutter at time ``t`` (advances to ``t`` first)."""
        self.advance(t)
        if is_open and not self.params.shutter_open:
            self._monolayers = math.floor(self._monolayers + 0.5)  # a recovered surface is complete
            self._layer_start = self._monolayers
        self.params.shutter_open = is_open

    def advance(self, t: float) -> GrowthState:
        """Move the model to time ``t`` (never backwards) and return the state there."""
        p = self.params
        dt = max(0.0, t - self._t)
        self._t = max(t, self._t)
        self._azimuth = (
            self._azimuth + 6.0 * p.rotation_rpm * dt
        ) % 360.0  # 360 deg/rev / 60 s/min
        if p.shutter_open:
            period = max(p.monolayer_period_s, 1e-3)
            self._monolayers += dt / period
            self._rho = 1.0 - (1.0 - self._rho) * math.exp(-dt / max(p.damping_s, 1e-3))
            self._dip = math.sin(math.pi * self._monolayers) ** 2
        else:
            decay = math.exp(-dt / max(p.recovery_s, 1e-3))
            self._rho *= decay
            self._dip *= decay
        specular = (1.0 - 0.3 * self._rho) * (1.0 - p.amplitude * (1.0 - self._rho) * self._dip)
        layer = self._monolayers - self._layer_start
        return GrowthState(self._t, specular, self._azimuth, self._rho, self._monolayers, layer)
