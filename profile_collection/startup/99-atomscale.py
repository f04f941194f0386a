# Atomscale streaming, as a drop-in file: copy it into the startup/ directory of an existing Bluesky
# profile (it needs the profile's `RE`; name it so it runs after the file that makes `RE`).
# Settings come from the environment (docs/configuration.md): ATOMSCALE_API_KEY, ATOMSCALE_PROJECT_ID,
# ... ; ATOMSCALE_DISABLE=1 leaves it out. At the end of each run the callback prints the run's
# summary with where to see the data; `atomscale.wait()` returns it.
import atexit as _atexit

from atomscale_bluesky.allocator import tune_allocator as _tune_allocator
from atomscale_bluesky.apps.settings import make_callback as _make_callback
from atomscale_bluesky.plans import count_growth, growth_recipe, monitor_growth  # noqa: F401
from atomscale_bluesky.settings import load_settings as _load_atomscale_settings

# frame buffers reused from one heap, so a days-long session keeps a flat memory without a page
# fault per buffer (docs/troubleshooting.md; ATOMSCALE_TUNE_MALLOC=0 leaves glibc's malloc as it
# is). It works best called before other threads start: put it in your first startup file too.
_tune_allocator()

if not _load_atomscale_settings().disable:
    atomscale = _make_callback()
    RE.subscribe(atomscale)  # noqa: F821 - the profile's RunEngine
    _atexit.register(atomscale.close)
else:
    atomscale = None
