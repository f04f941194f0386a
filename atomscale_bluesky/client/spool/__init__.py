"""The disk spool: chunks wait here, on disk, until the backend has acknowledged them.

``Spool`` is the front; its parts each do one job: ``disk_format`` (files, markers, locks, atomic
writes), ``capacity`` (byte cap and free-disk floor), ``upload_queue`` (upload order, claims),
``expiry`` (retention, abandonment, close), ``recovery`` (resuming an earlier client's streams),
``stream_state`` (per-stream counters) and ``location`` (the default folder).
"""

from __future__ import annotations

from .disk_format import Entry
from .location import SPOOL_DIR_ENV, default_spool_root
from .spool import Spool
from .stream_state import SpoolStream

__all__ = ["SPOOL_DIR_ENV", "Entry", "Spool", "SpoolStream", "default_spool_root"]
