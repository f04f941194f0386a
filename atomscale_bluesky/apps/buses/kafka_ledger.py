"""The run ledger in a Kafka topic (one partition, compacted, keyed by run uid), so a standby in
the consumer group on any host reads the runs and streams of the consumer it replaces."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from atomscale_bluesky.apps.buses.kafka_config import KafkaSettings

__all__ = ["KafkaLedgerStore", "ledger_topic"]

logger = logging.getLogger(__name__)

READ_S = 30.0
SHARED_PREFIXES = ("security.", "sasl.", "ssl.", "client.")


def ledger_topic(group_id: str) -> str:
    """The consumer group's ledger topic."""
    return f"{group_id}.runs"


class KafkaLedgerStore:
    """Entries as JSON messages keyed by run uid; the latest per key wins (as compaction keeps)."""

    def __init__(self, settings: KafkaSettings, topic: str | None = None) -> None:
        from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

        self.topic = topic or ledger_topic(settings.group_id)
        self.description = f"Kafka topic {self.topic!r}"
        common: dict[str, Any] = {"bootstrap.servers": ",".join(settings.bootstrap_servers)}
        common.update(
            (k, v) for k, v in settings.consumer_config.items() if k.startswith(SHARED_PREFIXES)
        )
        self._ensure_topic(common)
        self._producer = Producer({**common, "acks": "all", "linger.ms": 0}, logger=logger)
        self._reader = Consumer(
            {
                **common,
                "group.id": f"{settings.group_id}.ledger-reader",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
            },
            logger=logger,
        )
        self._partition = TopicPartition(self.topic, 0)
        self._reader.assign([TopicPartition(self.topic, 0, OFFSET_BEGINNING)])
        self._next = 0
        self._runs: dict[str, dict[str, Any]] = {}

    def _ensure_topic(self, common: dict[str, Any]) -> None:
        from confluent_kafka import KafkaError, KafkaException
        from confluent_kafka.admin import AdminClient, NewTopic

        admin = AdminClient(common)
        topic = NewTopic(self.topic, num_partitions=1, config={"cleanup.policy": "compact"})
        try:
            admin.create_topics([topic])[self.topic].result(READ_S)
            logger.info("created the run ledger topic %r", self.topic)
        except KafkaException as exc:
            if exc.args and exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise

    def _catch_up(self) -> None:
        """Read what was written since the last read, up to the topic's end."""
        _, end = self._reader.get_watermark_offsets(self._partition, timeout=READ_S)
        deadline = time.monotonic() + READ_S
        while self._next < end:
            if time.monotonic() > deadline:
                raise TimeoutError(f"could not read {self.topic!r} up to offset {end}")
            for message in self._reader.consume(500, 1.0):
                if message.error() is not None:
                    logger.warning("run ledger: %s", message.error())
                    continue
                self._next = int(message.offset() or 0) + 1
                key = (message.key() or b"").decode()
                try:
                    self._runs[key] = json.loads(message.value() or b"null")
                except ValueError:
                    logger.warning("run ledger: unreadable entry for %s", key)

    def get(self, uid: str) -> dict[str, Any] | None:
        self._catch_up()
        entry = self._runs.get(uid)
        return entry if isinstance(entry, dict) else None

    def put(self, uid: str, entry: dict[str, Any]) -> None:
        failures: list[Any] = []

        def delivered(error: Any, _message: Any) -> None:
            if error is not None:
                failures.append(error)

        self._producer.produce(
            self.topic, key=uid.encode(), value=json.dumps(entry).encode(), on_delivery=delivered
        )
        if self._producer.flush(READ_S) or failures:
            raise RuntimeError(f"run ledger entry of {uid} not written: {failures or 'timeout'}")
        self._runs[uid] = entry

    def close(self) -> None:
        self._reader.close()
