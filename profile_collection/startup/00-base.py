# Beamline session: imports and settings shared by the other startup files.
import os
from pathlib import Path

import numpy as np  # noqa: F401  (for interactive use)

from atomscale_bluesky import config_atomscale_logging
from atomscale_bluesky.allocator import tune_allocator

# frame buffers reused from one heap: flat memory over days, no page faults per buffer
# (docs/troubleshooting.md). First, before other threads start with arenas of their own.
tune_allocator()

DATA_HOME = (
    Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share")) / "atomscale-bluesky"
)
CAMERA_PREFIX = os.environ.get("ATOMSCALE_CAMERA_PREFIX", "RHEED:")
SENSORS_PREFIX = os.environ.get("ATOMSCALE_SENSORS_PREFIX", "GROWTH:")
CATALOG_DIR = Path(os.environ.get("ATOMSCALE_CATALOG_DIR", DATA_HOME / "catalog")).expanduser()
MD_DIR = Path(os.environ.get("ATOMSCALE_MD_DIR", DATA_HOME / "md")).expanduser()
# nslsii.configure_base when it is installed, unless ATOMSCALE_PROFILE_NSLSII=0
USE_NSLSII = os.environ.get("ATOMSCALE_PROFILE_NSLSII", "1").strip().lower() not in {
    "0",
    "false",
    "no",
    "off",
}
os.environ.setdefault("OPHYD_CONTROL_LAYER", "pyepics")

# Atomscale's problems where a session shows them (each run's end is printed by the callback)
config_atomscale_logging(os.environ.get("ATOMSCALE_LOG_LEVEL") or "WARNING")
