"""Child process for the IOC-restart test: RunEngine + AtomscaleCallback on its own CA port.

Usage: python ioc_run_process.py PREFIX DURATION ENDPOINT SPOOL OUT.json (key in ATOMSCALE_API_KEY;
the EPICS environment points at the test's IOC). Prints "running" when the plan starts and writes
the run summary, image event timestamps and IOC counters to OUT.json.
"""

from __future__ import annotations

import json
import sys
import threading
from typing import Any


def main() -> None:
    prefix, duration, endpoint, spool, out = sys.argv[1:6]
    from bluesky import RunEngine

    from atomscale_bluesky.callback import AtomscaleCallback
    from atomscale_bluesky.client import AtomscaleClient, Backoff
    from atomscale_bluesky.devices import RheedCamera, connect_all
    from atomscale_bluesky.plans import monitor_growth

    camera = RheedCamera(prefix, name="rheed")
    connect_all(camera)
    client = AtomscaleClient(endpoint=endpoint, spool_dir=spool, clock_sync=False,
                             spool_min_free_bytes=0, backoff=Backoff(0.1, 2.0))  # fmt: skip
    callback = AtomscaleCallback(client)
    RE = RunEngine({})
    RE.subscribe(callback)
    stamps: list[float] = []
    lock = threading.Lock()

    def keep(name: str, doc: dict[str, Any]) -> None:
        if "rheed_image" in doc["data"]:
            with lock:
                stamps.append(float(doc["timestamps"]["rheed_image"]))

    RE.subscribe(keep, "event")
    RE.subscribe(lambda name, doc: print("running", flush=True), "start")
    stops: list[dict[str, Any]] = []
    RE.subscribe(lambda name, doc: stops.append(doc), "stop")
    RE(monitor_growth(camera, None, float(duration), fps=30.0, md={"sample": "ioc restart"}))
    callback.flush(120)
    callback.close()
    client.close()
    (summary,) = callback.summaries
    with open(out, "w") as fh:
        json.dump({"summary": summary.as_dict(), "text": summary.text(), "stamps": sorted(stamps),
                   "exit_status": stops[0]["exit_status"]}, fh, default=str)  # fmt: skip


if __name__ == "__main__":
    main()
