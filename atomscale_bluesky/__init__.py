"""Stream Bluesky runs (RHEED video and growth sensor readings) to Atomscale."""

__version__ = "0.1.0"
