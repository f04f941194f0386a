"""``python -m atomscale_bluesky.server``: the same as ``atomscale-bluesky serve``."""

from __future__ import annotations

import argparse
import sys

from atomscale_bluesky.allocator import tune_allocator
from atomscale_bluesky.server.runner import add_serve_arguments, serve_from_args


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m atomscale_bluesky.server",
        description="Run the local Atomscale-compatible server.",
    )
    add_serve_arguments(parser)
    tune_allocator()  # upload bodies are reused heap memory, not mappings faulted in afresh
    return serve_from_args(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
