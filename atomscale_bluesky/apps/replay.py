"""Replay finished runs from a Tiled/databroker catalog through the Atomscale callback.

For runs taken while the network was down, or before the integration existed: every document of
the run goes through the same callback as live data, so frames and points keep the run's original
hardware timestamps (they are in the stored events, not taken from the replay's clock).
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)

Document = tuple[str, dict[str, Any]]


@dataclass(frozen=True)
class ReplayResult:
    """What one replayed run produced: its uid, how many documents went through, and any error."""

    uid: str
    documents: int
    error: str | None = None


def open_catalog(uri: str, *, api_key: str | None = None) -> Any:
    """A Tiled client for ``uri`` (a Tiled server URL, e.g. the profile's local catalog)."""
    from tiled.client import from_uri

    return from_uri(uri, api_key=api_key)


def run_documents(catalog: Any, uid: str) -> Iterator[Document]:
    """The documents of one run (``uid``, a uid prefix or a negative index) in their stored order."""
    run = catalog[int(uid)] if uid.lstrip("-").isdigit() else catalog[uid]
    for item in run.documents():
        if isinstance(item, dict):  # Tiled json-seq records: {"name": ..., "doc": ...}
            yield item["name"], item["doc"]
        else:
            name, doc = item
            yield name, doc


def replay_documents(
    documents: Iterable[Document], callback: Callable[[str, dict[str, Any]], Any]
) -> int:
    """Feed documents to ``callback`` in order; returns how many went through."""
    count = 0
    for name, doc in documents:
        callback(name, doc)
        count += 1
    return count


def replay_runs(
    catalog: Any,
    uids: Sequence[str],
    callback: Callable[[str, dict[str, Any]], Any],
) -> list[ReplayResult]:
    """Replay each run; a run that cannot be read is reported and the others still go through."""
    results = []
    for uid in uids:
        try:
            count = replay_documents(run_documents(catalog, uid), callback)
        except Exception as exc:  # one unreadable run must not stop the others
            logger.error("replay of run %s failed: %s: %s", uid, type(exc).__name__, exc)
            results.append(ReplayResult(uid=uid, documents=0, error=f"{type(exc).__name__}: {exc}"))
            continue
        logger.info("replayed run %s (%d documents)", uid, count)
        results.append(ReplayResult(uid=uid, documents=count))
    return results


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from atomscale_bluesky.apps.settings import add_callback_arguments

    parser.add_argument("--catalog", required=True, help="Tiled server URL of the run catalog")
    parser.add_argument(
        "--catalog-api-key", default=None, help="API key of the catalog (else TILED_API_KEY)"
    )
    parser.add_argument("uids", nargs="+", help="run uids (or uid prefixes, or -1 for the latest)")
    add_callback_arguments(parser)


def run(args: argparse.Namespace) -> int:
    import os

    from atomscale_bluesky.apps.settings import callback_from_args

    catalog = open_catalog(
        args.catalog, api_key=args.catalog_api_key or os.environ.get("TILED_API_KEY")
    )
    callback = callback_from_args(args)
    try:
        results = replay_runs(catalog, args.uids, callback)
    finally:
        callback.close()
    for result in results:
        status = "ok" if result.error is None else f"FAILED ({result.error})"
        print(f"run {result.uid}: {result.documents} documents replayed: {status}")
    for summary in getattr(callback, "summaries", []):
        print(summary)
    return 0 if all(r.error is None for r in results) else 1
