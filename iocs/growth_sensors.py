"""Simulated MBE growth sensors IOC (default prefix GROWTH:).

Run python -m iocs.growth_sensors --help (or python iocs/growth_sensors.py, or atomscale-bluesky ioc growth_sensors).
"""

from __future__ import annotations

import sys

from atomscale_bluesky.sim.launch import ioc_main


def main(argv: list[str] | None = None) -> None:
    ioc_main("growth_sensors", sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    main()
