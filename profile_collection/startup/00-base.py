# Beamline session: imports and settings shared by the other startup files.
import logging
import os
from pathlib import Path

import numpy as np  # noqa: F401  (for interactive use)

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

# Atomscale's records (each run's end, problems) where a session shows them: the terminal
_atomscale_log = logging.getLogger("atomscale_bluesky")
if not _atomscale_log.handlers:
    _handler = logging.StreamHandler()
    _handler.setFormatter(logging.Formatter("[%(levelname)1.1s %(asctime)s %(name)s] %(message)s"))
    _handler.setLevel(logging.WARNING)
    _atomscale_log.addHandler(_handler)
    _atomscale_log.setLevel(logging.INFO)
