# Plans for a growth session: bluesky's standard plans plus the growth-monitoring ones.
from bluesky.plan_stubs import mv, sleep  # noqa: F401
from bluesky.plans import count  # noqa: F401

from atomscale_bluesky.plans import growth_recipe, monitor_growth  # noqa: F401
