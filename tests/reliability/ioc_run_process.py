"""Child process for the IOC-restart test: RunEngine + AtomscaleCallback on its own CA port.

Usage: python ioc_run_process.py PREFIX DURATION ENDPOINT SPOOL OUT.json (key in ATOMSCALE_API_KEY;
the EPICS environment points at the test's IOC). Prints "running" when the plan starts, then one
line per 10 image events ("frames N"), so the test acts on counts, not on seconds. The run ends
when the test creates OUT.json.stop (``RE.stop()``: cleanup, exit status "success") or after
DURATION s, a deadline only. Writes the run summary, image event timestamps and exit status to
OUT.json.
"""

from __future__ import annotations

import contextlib
import json
import sys
import threading
from pathlib import Path
from typing import Any


def main() -> None:
    prefix, duration, endpoint, spool, out = sys.argv[1:6]
    from bluesky import RunEngine
    from bluesky.utils import RunEngineInterrupted

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
                if len(stamps) % 10 == 0:
                    print(f"frames {len(stamps)}", flush=True)

    RE.subscribe(keep, "event")
    RE.subscribe(lambda name, doc: print("running", flush=True), "start")
    stops: list[dict[str, Any]] = []
    RE.subscribe(lambda name, doc: stops.append(doc), "stop")
    stop_file = Path(out + ".stop")
    finished = threading.Event()

    def stop_when_asked() -> None:
        while not finished.wait(0.05):
            if stop_file.exists():
                RE.stop()  # from this thread, as a user would: cleanup runs, exit "success"
                return

    threading.Thread(target=stop_when_asked, daemon=True).start()
    with contextlib.suppress(RunEngineInterrupted):  # raised when stopped on request
        RE(monitor_growth(camera, None, float(duration), fps=30.0, md={"sample": "ioc restart"}))
    finished.set()
    callback.flush(120)
    callback.close()
    client.close()
    (summary,) = callback.summaries
    with open(out, "w") as fh:
        json.dump({"summary": summary.as_dict(), "text": summary.text(), "stamps": sorted(stamps),
                   "exit_status": stops[0]["exit_status"]}, fh, default=str)  # fmt: skip


if __name__ == "__main__":
    main()
