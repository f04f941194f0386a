"""``atomscale-bluesky drain``: upload and finalize whatever a spool holds.

For after a restart (the process that spooled the chunks is gone) or a cron job: it opens a client
on the spool, creates streams still waiting to be created, uploads every chunk and ends every
stream whose finalize was requested or whose process is gone. It never deletes unsent chunks: on
a timeout they stay spooled for the next drain.

Exit status: 0 everything stored, 1 something was lost (the reasons are printed), 2 chunks are
still pending when the timeout ran out.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["add_arguments", "exit_status", "run"]

logger = logging.getLogger(__name__)

EXIT_STORED, EXIT_LOST, EXIT_PENDING = 0, 1, 2
PROGRESS_EVERY_S = 5.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--endpoint", help="Atomscale API URL (ATOMSCALE_ENDPOINT)")
    parser.add_argument("--spool-dir", help="spool directory (ATOMSCALE_SPOOL_DIR)")
    parser.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="give up (leaving the rest spooled) after this many seconds; default: until done",
    )


def exit_status(reports: Sequence[Any]) -> int:
    """1 when anything was lost, else 2 when chunks are still pending, else 0."""
    if any(report.not_uploaded for report in reports):
        return EXIT_LOST
    if any(report.pending for report in reports):
        return EXIT_PENDING
    return EXIT_STORED


class _Progress:
    """Prints the spool's status every few seconds while draining."""

    def __init__(self) -> None:
        self._last = 0.0

    def __call__(self, status: Mapping[str, Any]) -> None:
        now = time.monotonic()
        if now - self._last < PROGRESS_EVERY_S:
            return
        self._last = now
        print(
            f"drain: {status.get('chunks_pending', '?')} chunk(s) pending, "
            f"{status.get('chunks_uploaded', '?')} uploaded"
            + (" (paused: the API key is refused)" if status.get("auth_paused") else ""),
            flush=True,
        )


def run(args: argparse.Namespace) -> int:
    from atomscale_bluesky.client import AtomscaleClient
    from atomscale_bluesky.settings import load_settings

    settings = load_settings(endpoint=args.endpoint, spool_dir=args.spool_dir)
    with AtomscaleClient(settings=settings) as client:
        print(f"drain: spool {client.status()['dir']} -> {client.endpoint}", flush=True)
        reports = client.drain(timeout_s=args.timeout, progress=_Progress())
    for report in reports:
        name = report.data_id or report.local_id
        line = (
            f"stream {name}: {report.uploaded} chunk(s) uploaded, {report.pending} pending, "
            f"{report.not_uploaded} lost"
        )
        for idx, reason in report.lost[:5]:
            line += f"; chunk {idx}: {reason}"
        print(line, flush=True)
    status = exit_status(reports)
    if status == EXIT_PENDING:
        print("drain: chunks are still pending; run drain again later", flush=True)
    return status
