"""Run one page's Python blocks in order, in one namespace, as one Bluesky session would.

Usage: ``python run_page.py BLOCKS.json``. The namespace starts with ``RE`` (a RunEngine), as in
the session the docs address; each block is compiled under its page and line, so a traceback
points at the docs. Exit status 1 names the failing block.
"""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path


def main(path: str) -> int:
    blocks = json.loads(Path(path).read_text())
    from bluesky import RunEngine

    namespace: dict[str, object] = {"__name__": "__main__", "RE": RunEngine({})}
    for block in blocks:
        print(f"--- running {block['where']}", flush=True)
        try:
            exec(compile(block["code"], block["where"], "exec"), namespace)
        except BaseException:  # noqa: BLE001 - report which block failed, then fail
            traceback.print_exc()
            print(f"DOC BLOCK FAILED {block['where']}", flush=True)
            return 1
    print("ALL BLOCKS RAN", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
