# The RunEngine, with metadata (sample, project, operator...) that persists between sessions.
from bluesky import RunEngine
from bluesky.utils import PersistentDict

RE = RunEngine({})
MD_DIR.mkdir(parents=True, exist_ok=True)
RE.md = PersistentDict(str(MD_DIR))
