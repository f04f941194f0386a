"""Kafka: read bluesky-kafka's messages (msgpack of ``(name, doc)``, numpy arrays by
msgpack-numpy) in a consumer group, committing offsets by hand.

The group gives each partition to one consumer; a standby in the same group takes a dead
consumer's partitions after ``session.timeout.ms`` and resumes from the last committed offset.
Publishers keep a run on one partition by keying its messages with the run uid (bluesky-kafka's
``key=start_doc["uid"]``) or, simpler, with one partition per RunEngine topic.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from atomscale_bluesky.apps.buses.bus_message import BusDocument
from atomscale_bluesky.apps.buses.kafka_config import KafkaSettings

__all__ = ["KafkaSource", "decode_message"]

logger = logging.getLogger(__name__)

BATCH = 256


def decode_message(value: bytes) -> tuple[str, dict[str, Any]]:
    """bluesky-kafka's serialisation: msgpack of ``[name, doc]`` with msgpack-numpy arrays."""
    import msgpack
    import msgpack_numpy

    name, doc = msgpack.unpackb(value, object_hook=msgpack_numpy.decode, strict_map_key=False)
    return str(name), doc


class KafkaSource:
    """A confluent-kafka consumer subscribed to the settings' topics."""

    def __init__(self, settings: KafkaSettings) -> None:
        from confluent_kafka import Consumer

        if not settings.topics:
            raise ValueError("no Kafka topic (--beamline, --topic or the configuration file)")
        self.settings = settings
        self.description = f"Kafka topics {settings.topics} (group {settings.group_id})"
        # a rebalance restarts a partition at its committed offset: what this process already
        # delivered is not delivered again
        self._delivered: dict[tuple[str, int], int] = {}
        self._owned: set[tuple[str, int]] = set()
        self._rebalancing = False
        self._consumer = Consumer(settings.librdkafka_config(), logger=logger)
        self._consumer.subscribe(
            list(settings.topics), on_assign=self._assigned, on_revoke=self._revoked
        )
        self.undecodable = 0

    def _assigned(self, _consumer: Any, partitions: list[Any]) -> None:
        logger.info("assigned %s", [f"{p.topic}[{p.partition}]" for p in partitions])
        self._owned.update((str(p.topic), int(p.partition)) for p in partitions)
        self._rebalancing = False

    def _revoked(self, _consumer: Any, partitions: list[Any]) -> None:
        logger.info("revoked %s", [f"{p.topic}[{p.partition}]" for p in partitions])
        self._owned.difference_update((str(p.topic), int(p.partition)) for p in partitions)
        self._rebalancing = True

    def lost_lanes(self) -> set[Any]:
        """Partitions this consumer delivered from and no longer owns once the group settled
        (another member reads them now, from the committed offset)."""
        if self._rebalancing:
            return set()
        return set(self._delivered) - self._owned

    def receive(self, timeout: float) -> Sequence[BusDocument]:
        documents: list[BusDocument] = []
        for message in self._consumer.consume(BATCH, timeout):
            error = message.error()
            if error is not None:
                logger.warning("Kafka: %s", error)
                continue
            lane = (str(message.topic()), int(message.partition() or 0))
            offset = int(message.offset() or 0)
            if offset <= self._delivered.get(lane, -1):
                continue
            self._delivered[lane] = offset
            try:
                name, doc = decode_message(message.value() or b"")
            except Exception as exc:  # noqa: BLE001 - a bad message is logged and passed over
                self.undecodable += 1
                logger.error("undecodable message at %s offset %s: %s", lane, offset, exc)
                continue
            documents.append(BusDocument(name, doc, lane, (*lane, offset)))
        return documents

    def commit(self, position: Any) -> None:
        from confluent_kafka import TopicPartition

        topic, partition, offset = position
        self._consumer.commit(
            offsets=[TopicPartition(topic, partition, offset + 1)], asynchronous=False
        )

    def ledger_store(self) -> Any:
        """The run ledger in a topic of this cluster, shared with the group's standbys."""
        from atomscale_bluesky.apps.buses.kafka_ledger import KafkaLedgerStore

        return KafkaLedgerStore(self.settings)

    def close(self) -> None:
        self._consumer.close()
