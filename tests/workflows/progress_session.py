"""An interactive session (run with ``python -i``) streaming a short run to a local server.

The callback is built with its defaults: in an interactive session on a terminal it shows the
progress line and prints the run's summary. The plan waits, after each reading, until the
progress line has shown it, so the line updates at least once per reading.
"""

import time

import bluesky.plan_stubs as bps
from bluesky import RunEngine
from ophyd.sim import SynGauss, motor

from atomscale_bluesky.callback import AtomscaleCallback
from atomscale_bluesky.server.runner import running_server

READINGS = 4

with running_server() as server:
    cb = AtomscaleCallback(
        api_key=server.api_key, endpoint=server.url, points_per_chunk=1, point_flush_s=0.01
    )
    det = SynGauss("det", motor, "motor", center=0, Imax=1, sigma=1)
    RE = RunEngine({})
    RE.subscribe(cb)

    def plan():
        yield from bps.open_run(md={"sample": "pty wafer"})
        for i in range(1, READINGS + 1):
            yield from bps.trigger_and_read([det])
            deadline = time.monotonic() + 120
            while (cb.progress.last_line is None or cb.progress.last_line.points < i) and (
                time.monotonic() < deadline
            ):
                yield from bps.sleep(0.02)
        yield from bps.close_run()

    RE(plan())
    summary = cb.wait(timeout=120)
    cb.close()
print("SESSION-DONE", summary.points, "SESSION-END", flush=True)
