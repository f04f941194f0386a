"""Simulated RHEED camera IOC (areaDetector-compatible PVs, default prefix RHEED:).

Run python -m iocs.rheed_camera --help (or python iocs/rheed_camera.py, or atomscale-bluesky ioc rheed_camera).
"""

from __future__ import annotations

import sys

from atomscale_bluesky.sim.launch import ioc_main


def main(argv: list[str] | None = None) -> None:
    ioc_main("rheed_camera", sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    main()
