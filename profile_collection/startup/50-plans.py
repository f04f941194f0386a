# Plans for a growth session: bluesky's standard plans (the growth plans come with 99-atomscale.py).
from bluesky.plan_stubs import mv, sleep  # noqa: F401
from bluesky.plans import count  # noqa: F401
