"""Child process: a new client on an existing spool drains it (``AtomscaleClient.drain``).

Usage: python _drain_process.py ENDPOINT SPOOL_DIR (API key from ATOMSCALE_API_KEY). Prints one
JSON line per stream report, then ``done``.
"""

from __future__ import annotations

import json
import sys


def main() -> None:
    from atomscale_bluesky.client import AtomscaleClient, Backoff

    endpoint, spool_dir = sys.argv[1], sys.argv[2]
    with AtomscaleClient(
        endpoint=endpoint,
        spool_dir=spool_dir,
        spool_min_free_bytes=0,
        clock_sync=False,
        backoff=Backoff(0.05, 0.5),
    ) as client:
        for report in client.drain(timeout_s=120):
            print(json.dumps(report.as_dict()), flush=True)
    print("done", flush=True)


if __name__ == "__main__":
    main()
