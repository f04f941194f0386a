"""The ``atomscale-bluesky`` command: demo, serve, ioc, replay, consume, drain, check, zmq-proxy."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from atomscale_bluesky.allocator import tune_allocator
from atomscale_bluesky.log import LOGGER_NAME, config_atomscale_logging
from atomscale_bluesky.settings import ConfigError


@dataclass(frozen=True)
class Subcommand:
    """A subcommand whose module provides ``add_arguments(parser)`` and ``run(args) -> int``."""

    name: str
    module: str
    help: str
    add_arguments: str = "add_arguments"
    run: str = "run"


SUBCOMMANDS = (
    Subcommand(
        "demo",
        "atomscale_bluesky.apps.demo",
        "run simulated IOCs, the local server and a growth recipe streaming to it",
    ),
    Subcommand(
        "serve",
        "atomscale_bluesky.server.runner",
        "run the local Atomscale-compatible server",
        add_arguments="add_serve_arguments",
        run="serve_from_args",
    ),
    Subcommand(
        "ioc",
        "atomscale_bluesky.apps.cli",
        "run a simulated IOC in the foreground (options after the kind go to the IOC)",
        add_arguments="add_ioc_arguments",
        run="ioc_from_args",
    ),
    Subcommand(
        "replay",
        "atomscale_bluesky.apps.replay",
        "stream finished runs from a Tiled/databroker catalog to Atomscale",
    ),
    Subcommand(
        "consume",
        "atomscale_bluesky.apps.consume",
        "run the callback out of process on a bus: 0MQ proxy, Kafka or NATS JetStream",
    ),
    Subcommand(
        "drain",
        "atomscale_bluesky.apps.drain",
        "upload and finalize whatever a spool holds (after a restart, or from cron)",
    ),
    Subcommand(
        "check",
        "atomscale_bluesky.apps.check",
        "connect to a camera (and sensor PVs), read one frame, print what would stream",
    ),
    Subcommand(
        "zmq-proxy",
        "atomscale_bluesky.apps.consume",
        "run bluesky's 0MQ proxy bound to loopback",
        add_arguments="add_proxy_arguments",
        run="proxy_from_args",
    ),
)


def add_ioc_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "kind",
        choices=("rheed_camera", "growth_sensors", "growth_chamber"),
        help="which IOC (growth_chamber: camera and sensors in one process)",
    )
    parser.add_argument(
        "ioc_args",
        nargs=argparse.REMAINDER,
        help="the IOC's own options (--list-pvs, --prefix, --fps ...)",
    )


def ioc_from_args(args: argparse.Namespace) -> int:
    from atomscale_bluesky.sim.launch import ioc_main

    ioc_main(args.kind, list(args.ioc_args))
    return 0


def _load(sub: Subcommand, attribute: str) -> Callable[..., Any]:
    """Import a subcommand's module only when it is used, so a light install still starts."""
    try:
        module = importlib.import_module(sub.module)
    except ImportError as exc:
        if (exc.name or "").startswith("atomscale_bluesky"):
            raise
        raise SystemExit(
            f"atomscale-bluesky {sub.name}: a dependency is missing ({exc.name}); "
            "install the matching extra, e.g. pip install 'atomscale-bluesky[sim,server,replay,zmq]'"
        ) from exc
    return getattr(module, attribute)  # type: ignore[no-any-return]


def build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    """The top-level parser; only the chosen subcommand's module is imported."""
    parser = argparse.ArgumentParser(
        prog="atomscale-bluesky",
        description="Stream Bluesky runs (RHEED video and growth sensor readings) to Atomscale.",
    )
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more log output (-vv: debug)"
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for sub in SUBCOMMANDS:
        sub_parser = subparsers.add_parser(sub.name, help=sub.help, description=sub.help)
        sub_parser.set_defaults(_subcommand=sub)
        if sub.name == chosen:
            _load(sub, sub.add_arguments)(sub_parser)
    return parser


def configure_logging(verbose: int) -> None:
    """Our lines at ``ATOMSCALE_LOG_LEVEL`` (INFO) or DEBUG with ``-vv``; other libraries' at
    WARNING, INFO with ``-v``, DEBUG with ``-vv``; all on stderr, each line once."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    ours = config_atomscale_logging("DEBUG" if verbose >= 2 else None, file=sys.stderr)
    ours.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger(LOGGER_NAME).propagate = False  # the root handler would print them again


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(args_list).parse_args(args_list)
    sub: Subcommand = args._subcommand
    try:
        configure_logging(args.verbose)
        tune_allocator()  # every subcommand is a long-running process that moves frames
        result = _load(sub, sub.run)(args)
    except ConfigError as error:  # a setting to change, not a bug: say which, without a trace
        print(f"atomscale-bluesky {sub.name}: {error}", file=sys.stderr)
        return 2
    return int(result or 0)


if __name__ == "__main__":
    raise SystemExit(main())
