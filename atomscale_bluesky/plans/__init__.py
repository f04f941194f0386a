"""Bluesky plans for growth monitoring: stream every RHEED frame and sensor readback during a run.

``monitor_growth`` watches the camera and sensors for a duration; ``count_growth`` takes triggered
snapshots; ``growth_recipe`` drives the chamber (temperatures, rotation, shutter cycles) while
monitoring. Every wait is a short sleep between checkpoints, so pause and abort act promptly.
"""

from atomscale_bluesky.plans.monitoring import count_growth, monitor_growth, snapshots
from atomscale_bluesky.plans.recipe import growth_recipe
from atomscale_bluesky.plans.stubs import Plan, start_acquisition, stop_acquisition, wait

__all__ = [
    "monitor_growth",
    "count_growth",
    "growth_recipe",
    "snapshots",
    "start_acquisition",
    "stop_acquisition",
    "wait",
    "Plan",
]
