"""The local server's settings: data directory, API keys, presign lifetime and body limits."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["API_KEYS_ENV", "ServerSettings", "keys_from_env"]

MiB = 1024 * 1024
API_KEYS_ENV = "ATOMSCALE_LOCAL_API_KEYS"


@dataclass
class ServerSettings:
    """Everything configurable about one server instance (the keys are never shown in reprs)."""

    data_dir: Path
    api_keys: Sequence[str] = field(repr=False)
    presign_ttl_s: float = 900.0
    max_upload_bytes: int = 512 * MiB
    max_json_bytes: int = 16 * MiB
    max_frame_bytes: int = 2048 * MiB
    stream_idle_s: float = 2 * 3600.0  # a RHEED stream silent this long is closed (stream_error)
    analysis: bool = True  # live RHEED analysis (GET /rheed/timeseries/{id}/); off: 404 always
    analysis_shutter_pattern: str = "*shutter*"  # time-series channels carrying shutter states

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir)
        self.api_keys = tuple(k for k in self.api_keys if k)
        if not self.api_keys:
            raise ValueError("the local server needs at least one API key")
        if not self.stream_idle_s > 0:
            raise ValueError("stream_idle_s must be positive")


def keys_from_env() -> list[str]:
    """API keys from ``ATOMSCALE_LOCAL_API_KEYS`` (comma-separated)."""
    from atomscale_bluesky.settings import load_settings

    return list(load_settings().local_api_keys)
