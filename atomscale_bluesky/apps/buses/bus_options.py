"""The ``consume`` command's bus options and the source they describe (Kafka, NATS or none)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, cast

from atomscale_bluesky.apps.buses.bus_message import BusSource
from atomscale_bluesky.apps.buses.run_ledger import FileStore, LedgerStore

__all__ = ["add_bus_arguments", "chosen_bus", "ledger_store", "source_from_args"]


def add_bus_arguments(parser: argparse.ArgumentParser) -> None:
    kafka = parser.add_argument_group("Kafka (bluesky-kafka publishers)")
    kafka.add_argument(
        "--kafka", metavar="HOST:PORT,...", help="bootstrap servers (overrides the file's)"
    )
    kafka.add_argument(
        "--kafka-config",
        metavar="PATH",
        help="NSLS-II Kafka file (default $BLUESKY_KAFKA_CONFIG_PATH, else /etc/bluesky/kafka.yml)",
    )
    kafka.add_argument(
        "--beamline", help="read <beamline>.bluesky.runengine.documents (and the file's topics)"
    )
    kafka.add_argument("--topic", action="append", default=[], help="a topic; repeatable")
    kafka.add_argument(
        "--group-id", default="atomscale-bluesky", help="consumer group (default %(default)s)"
    )
    kafka.add_argument(
        "--kafka-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a librdkafka consumer setting; repeatable",
    )
    nats = parser.add_argument_group("NATS JetStream (bluesky-nats publishers)")
    nats.add_argument("--nats", metavar="nats://HOST:PORT,...", help="NATS servers")
    nats.add_argument("--nats-stream", default="bluesky", help="JetStream stream (%(default)s)")
    nats.add_argument(
        "--nats-subject", default="events.>", help="publishers' subjects (%(default)s)"
    )
    nats.add_argument(
        "--nats-durable",
        default="atomscale-bluesky",
        help="durable consumer shared by a consumer and its standbys (%(default)s)",
    )
    nats.add_argument(
        "--lease-s",
        type=float,
        default=15.0,
        help="a dead consumer's lease expires after this many seconds (%(default)s)",
    )
    parser.add_argument(
        "--ledger",
        metavar="PATH",
        help="file of the runs handled and their streams (default: on the broker, a JetStream "
        "bucket or the Kafka topic <group-id>.runs, which standbys on any host read)",
    )


def chosen_bus(args: argparse.Namespace) -> str:
    """``kafka``, ``nats`` or ``zmq`` from which options were given."""
    if args.kafka or args.kafka_config or args.beamline or args.topic:
        return "kafka"
    if args.nats:
        return "nats"
    return "zmq"


def source_from_args(args: argparse.Namespace) -> BusSource:
    """The Kafka or NATS source the options describe."""
    if chosen_bus(args) == "kafka":
        from atomscale_bluesky.apps.buses.kafka_bus import KafkaSource
        from atomscale_bluesky.apps.buses.kafka_config import (
            KafkaSettings,
            beamline_topic,
            config_file_path,
            parse_options,
        )

        path = config_file_path(args.kafka_config)
        settings = (
            KafkaSettings.from_file(path, args.beamline) if path is not None else KafkaSettings()
        )
        if args.kafka:
            settings.bootstrap_servers = [s.strip() for s in args.kafka.split(",") if s.strip()]
        if args.beamline and beamline_topic(args.beamline) not in settings.topics:
            settings.topics.append(beamline_topic(args.beamline))
        settings.topics += [t for t in args.topic if t not in settings.topics]
        settings.group_id = args.group_id
        settings.consumer_config.update(parse_options(args.kafka_option))
        return KafkaSource(settings)
    from atomscale_bluesky.apps.buses.nats_bus import NatsSettings, NatsSource

    servers = [s.strip() for s in args.nats.split(",") if s.strip()]
    return NatsSource(
        NatsSettings(
            servers=servers,
            stream=args.nats_stream,
            subject=args.nats_subject,
            durable=args.nats_durable,
            lease_s=args.lease_s,
        )
    )


def ledger_store(args: argparse.Namespace, client: Any, source: BusSource) -> LedgerStore:
    """Where the run ledger lives: the file given; else the broker's own store when it has one
    (a JetStream bucket, a Kafka topic: read by standbys on any host); else a file beside the
    spool."""
    if args.ledger:
        return FileStore(Path(args.ledger))
    broker_store = getattr(source, "ledger_store", None)
    if callable(broker_store):
        return cast("LedgerStore", broker_store())
    root = Path(client.spool_root)
    return FileStore(root.with_name(root.name + ".runs.json"))
