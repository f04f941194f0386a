# Stream every run to Atomscale (settings from the environment: docs/configuration.md).
import atexit

from atomscale_bluesky.settings import make_callback

if os.environ.get("ATOMSCALE_DISABLE", "").strip().lower() not in {"1", "true", "yes"}:
    atomscale = make_callback()
    RE.subscribe(atomscale)
    atexit.register(atomscale.close)
else:
    atomscale = None
