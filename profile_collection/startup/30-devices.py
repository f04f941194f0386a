# The RHEED camera and the growth sensors (prefixes from the environment).
from atomscale_bluesky.devices import GrowthSensors, RheedCamera

rheed = RheedCamera(CAMERA_PREFIX, name="rheed")
growth = GrowthSensors(SENSORS_PREFIX, name="growth")
rheed.wait_for_connection(timeout=10)
growth.wait_for_connection(timeout=10)
