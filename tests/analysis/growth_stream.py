"""Streams simulated growth to a local server through our client: RHEED frames rendered by the
simulator's pattern and growth model, and the shutter state as a time series of the same run."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from atomscale_bluesky.sim.growth import GrowthModel, GrowthParams
from atomscale_bluesky.sim.pattern import FrameInputs, PatternConfig, RheedPattern

T0 = 1_760_000_000.0


@dataclass
class GrowthStreamer:
    """Pushes chunk after chunk of a growth that opens the shutter at ``open_at`` (s after T0)."""

    client: object
    period_s: float = 1.3
    fps: float = 25.0
    chunk: int = 50
    open_at: float = 1.0
    name: str = "analysis test scan 1"

    def __post_init__(self) -> None:
        self.model = GrowthModel(GrowthParams(monolayer_period_s=self.period_s), t0=T0)
        self.pattern = RheedPattern(PatternConfig(width=256, height=192, seed=2))
        self.rheed = self.client.open_rheed_stream(  # type: ignore[attr-defined]
            fps=self.fps, chunk_size=self.chunk, stream_name=f"{self.name} (rheed)"
        )
        self.sensors = self.client.open_timeseries_stream(  # type: ignore[attr-defined]
            stream_name=f"{self.name} (sensors)", points_per_chunk=10
        )
        self.sensors.push("growth_shutter_ga", [T0, T0 + self.open_at], [0.0, 1.0])
        self.pushed = 0

    @property
    def data_id(self) -> str:
        return str(self.rheed.data_id)

    def truth(self, t: float) -> float:
        """Monolayers grown since the opening at Unix time ``t``."""
        return max(0.0, (t - T0 - self.open_at) / self.period_s)

    def push_chunk(self) -> float:
        """Render and push the next chunk; returns the Unix time of its last frame."""
        start = T0 + self.pushed / self.fps
        frames = []
        for i in range(self.chunk):
            t = start + i / self.fps
            if t >= T0 + self.open_at and not self.model.params.shutter_open:
                self.model.set_shutter(True, T0 + self.open_at)
            state = self.model.advance(t)
            frames.append(self.pattern.render(FrameInputs(state.specular, 0.0, state.roughness)))
        self.rheed.push(np.stack(frames), int(round(start * 1000)))
        self.pushed += self.chunk
        return start + (self.chunk - 1) / self.fps
