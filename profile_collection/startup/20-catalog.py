# A local run catalog (Tiled on 127.0.0.1) storing every run; `catalog[-1]` is the latest run.
import atexit

from atomscale_bluesky.apps.catalog import start_catalog

local_catalog = start_catalog(CATALOG_DIR)
catalog = local_catalog.client
RE.subscribe(local_catalog.writer())
atexit.register(local_catalog.close)
