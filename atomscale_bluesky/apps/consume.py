"""Run the Atomscale callback in its own process, reading documents from a bus.

The RunEngine process only publishes documents; compression, spooling and upload happen here.
Three buses: bluesky's 0MQ proxy (``--zmq``, the default; no acknowledgements), Kafka
(``--kafka``/``--kafka-config``/``--beamline``, bluesky-kafka publishers) and NATS JetStream
(``--nats``, bluesky-nats publishers). Kafka and NATS go through
:class:`~atomscale_bluesky.apps.buses.consumer_loop.ConsumerLoop`, which acknowledges a run's
messages once its data is in the spool. 0MQ addresses are explicit ``tcp://host:port`` strings:
bluesky's ``Proxy`` binds every interface when given bare port numbers.

Crash recovery: the consume command opens its client (and so its spool) at start. Streams that an
earlier consumer left unfinished in the same spool (it was killed mid-run) are uploaded again by the
client and finalized in a background thread (:func:`drain_spool`), while new runs stream as
usual. Frames that never reached the spool are recovered with ``atomscale-bluesky replay``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import math
import os
import signal
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from atomscale_bluesky.apps.buses.bus_message import BusSource

logger = logging.getLogger(__name__)

DEFAULT_IN = "tcp://127.0.0.1:5577"
DEFAULT_OUT = "tcp://127.0.0.1:5578"
LANE_LOST_EXIT = 75  # EX_TEMPFAIL: a supervisor restarts the consumer, which rejoins its group


def tcp_address(value: str) -> str:
    """``host:port`` or ``tcp://host:port`` as a 0MQ address; a bare port means 127.0.0.1."""
    text = value.strip()
    if "://" in text:
        return text
    if text.isdigit():
        return f"tcp://127.0.0.1:{text}"
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise argparse.ArgumentTypeError(f"expected host:port or tcp://host:port, got {value!r}")
    return f"tcp://{text}"


def run_consumer(
    address: str,
    callback: Callable[[str, dict[str, Any]], Any],
    *,
    prefix: bytes = b"",
    stop_event: threading.Event | None = None,
) -> None:
    """Dispatch every document from the proxy's out-address to ``callback`` until stopped.

    ``stop_event`` (set from another thread) or SIGINT/SIGTERM end the loop; the callback is then
    closed when it has a ``close()`` so every open stream is finalized.
    """
    from bluesky.callbacks.zmq import RemoteDispatcher

    loop = asyncio.new_event_loop()
    dispatcher = RemoteDispatcher(address, prefix=prefix, loop=loop)
    dispatcher.subscribe(callback)

    def cancel_polling() -> None:
        # on the loop's thread: cancelling its tasks ends ``start``, which then tears the
        # dispatcher down (bluesky 1.16's ``stop`` called here would wait for that forever)
        for task in asyncio.all_tasks(loop):
            task.cancel()

    def request_stop() -> None:
        loop.call_soon_threadsafe(cancel_polling)

    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(ValueError, RuntimeError):
                loop.add_signal_handler(sig, cancel_polling)
    watcher: threading.Thread | None = None
    if stop_event is not None:

        def stop_when_set() -> None:
            stop_event.wait()
            request_stop()

        watcher = threading.Thread(target=stop_when_set, daemon=True, name="consume-stop")
        watcher.start()
    logger.info("consuming documents from %s", address)
    try:
        dispatcher.start()
    except asyncio.CancelledError:
        pass
    finally:
        closer = getattr(callback, "close", None)
        if callable(closer):
            closer()
        loop.close()
    logger.info("consumer stopped")


def drain_spool(client: Any) -> threading.Thread:
    """Upload and finalize, in a background thread, what an earlier process left in the spool.

    Streams still to be created are created, every resumed chunk is uploaded and each resumed
    stream is ended on the server after its last chunk; nothing unsent is deleted. Outcomes are
    logged (one line per stream).
    """

    def work() -> None:
        try:
            reports = client.drain()
        except Exception as exc:  # noqa: BLE001 - recovery must not stop the consumer
            logger.error("could not drain the spool: %s", exc)
            return
        for report in reports:
            logger.info(
                "recovered stream %s from the spool: %d chunk(s) uploaded, %d pending, "
                "%d not uploaded",
                report.data_id or report.local_id,
                report.uploaded,
                report.pending,
                report.not_uploaded,
            )

    thread = threading.Thread(target=work, name="consume-drain", daemon=True)
    thread.start()
    return thread


def run_proxy(in_address: str = DEFAULT_IN, out_address: str = DEFAULT_OUT) -> None:
    """Run bluesky's 0MQ forwarder on explicit (loopback by default) addresses, in the foreground."""
    from bluesky.callbacks.zmq import Proxy

    logger.info("0MQ proxy: publishers -> %s, consumers <- %s", in_address, out_address)
    Proxy(in_address, out_address).start()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from atomscale_bluesky.apps.buses.bus_options import add_bus_arguments
    from atomscale_bluesky.apps.settings import add_callback_arguments, add_env_file_argument

    parser.add_argument(
        "--zmq",
        type=tcp_address,
        default=DEFAULT_OUT,
        help=f"the proxy's out-address to subscribe to (default {DEFAULT_OUT})",
    )
    parser.add_argument("--prefix", default="", help="only documents published with this prefix")
    add_bus_arguments(parser)
    add_callback_arguments(parser)
    add_env_file_argument(parser)


def run_bus_consumer(
    args: argparse.Namespace, environment: Any, client: Any, source: BusSource
) -> None:
    """Consume from Kafka or NATS until SIGINT/SIGTERM, acknowledging what is spooled.

    The callback records each run's streams in the run ledger, so a run redelivered after a
    crash is written again into the same streams; points are chunked by count only (no time
    flush), so a replay cuts them as the first pass did and each chunk rewrites its copy."""
    from atomscale_bluesky.apps.buses.bus_message import LaneLost
    from atomscale_bluesky.apps.buses.bus_options import ledger_store
    from atomscale_bluesky.apps.buses.consumer_loop import ConsumerLoop
    from atomscale_bluesky.apps.buses.run_ledger import RunLedger
    from atomscale_bluesky.apps.settings import callback_from_args

    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
    ledger = RunLedger(ledger_store(args, client, source))
    logger.info("run ledger: %s", ledger.store.description)
    callback = callback_from_args(
        args, environment, client=client, run_streams=ledger, point_flush_s=math.inf
    )
    try:
        ConsumerLoop(source, callback, ledger).run(stop)
    except LaneLost as exc:
        logger.error("%s; ending this process now, as after a crash", exc)
        logging.shutdown()
        os._exit(LANE_LOST_EXIT)


def run(args: argparse.Namespace) -> int:
    from atomscale_bluesky.apps.buses.bus_options import chosen_bus, source_from_args
    from atomscale_bluesky.apps.settings import callback_from_args
    from atomscale_bluesky.client import AtomscaleClient
    from atomscale_bluesky.settings import load_settings, with_env_file

    environment = load_settings(with_env_file(args.env_file))  # the command line wins over both
    client = AtomscaleClient(
        settings=environment.replace(endpoint=args.endpoint, spool_dir=args.spool_dir)
    )
    recovery = drain_spool(client)
    try:
        if chosen_bus(args) == "zmq":
            callback = callback_from_args(args, environment, client=client)
            run_consumer(args.zmq, callback, prefix=args.prefix.encode())
        else:
            source = source_from_args(args)
            try:
                run_bus_consumer(args, environment, client, source)
            finally:
                source.close()
    finally:
        recovery.join(timeout=5.0)
        client.close()
    return 0


def add_proxy_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--in-address", type=tcp_address, default=DEFAULT_IN)
    parser.add_argument("--out-address", type=tcp_address, default=DEFAULT_OUT)


def proxy_from_args(args: argparse.Namespace) -> int:
    run_proxy(args.in_address, args.out_address)
    return 0
