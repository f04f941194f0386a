# Stream every run to Atomscale (settings from the environment: docs/configuration.md).
import atexit

from atomscale_bluesky.allocator import tune_allocator
from atomscale_bluesky.apps.settings import make_callback

# frame buffers go straight back to the system, so a days-long session keeps a flat memory
# (docs/troubleshooting.md; ATOMSCALE_TUNE_MALLOC=0 leaves glibc's allocator as it is)
tune_allocator()

from atomscale_bluesky.settings import load_settings

if not load_settings().disable:
    atomscale = make_callback()
    RE.subscribe(atomscale)
    atexit.register(atomscale.close)
else:
    atomscale = None
