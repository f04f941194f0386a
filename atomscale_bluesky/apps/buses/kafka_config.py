"""Kafka settings in the NSLS-II convention: the YAML file nslsii and bluesky-kafka read.

The file (``BLUESKY_KAFKA_CONFIG_PATH``, else ``/etc/bluesky/kafka.yml``) has
``bootstrap_servers`` (a list), optionally ``producer_consumer_security_config`` and
``consumer_config`` (librdkafka settings), and ``runengine_topics`` (names with ``{endstation}``
for the beamline). The RunEngine's topic is ``<beamline>.bluesky.runengine.documents``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["DEFAULT_CONFIG_PATH", "KafkaSettings", "beamline_topic", "config_file_path"]

DEFAULT_CONFIG_PATH = Path("/etc/bluesky/kafka.yml")
DEFAULT_GROUP = "atomscale-bluesky"
MiB = 1024 * 1024
# a 2048x2048 16-bit frame inline in one event is 8 MiB; leave room for event pages
LARGE_MESSAGE_BYTES = 64 * MiB


def beamline_topic(beamline: str) -> str:
    """The topic bluesky-kafka publishers of that beamline's RunEngine write to."""
    return f"{beamline.lower()}.bluesky.runengine.documents"


def config_file_path(explicit: str | None, environ: Mapping[str, str] | None = None) -> Path | None:
    """The configuration file to read: explicit, else the variable, else the default if it
    exists."""
    env = os.environ if environ is None else environ
    if explicit:
        return Path(explicit)
    if env.get("BLUESKY_KAFKA_CONFIG_PATH"):
        return Path(env["BLUESKY_KAFKA_CONFIG_PATH"])
    return DEFAULT_CONFIG_PATH if DEFAULT_CONFIG_PATH.exists() else None


@dataclass
class KafkaSettings:
    """Where to read (servers, topics) and how (group, librdkafka consumer settings)."""

    bootstrap_servers: list[str] = field(default_factory=list)
    topics: list[str] = field(default_factory=list)
    group_id: str = DEFAULT_GROUP
    consumer_config: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_file(cls, path: Path, beamline: str | None) -> KafkaSettings:
        """Read the NSLS-II file; ``{endstation}`` in ``runengine_topics`` becomes the
        beamline."""
        import yaml

        loaded = yaml.safe_load(path.read_text()) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: expected a mapping of Kafka settings")
        servers = loaded.get("bootstrap_servers") or []
        if isinstance(servers, str):
            servers = [s.strip() for s in servers.split(",") if s.strip()]
        config: dict[str, Any] = {}
        config.update(loaded.get("producer_consumer_security_config") or {})
        config.update(loaded.get("consumer_config") or {})
        topics: list[str] = []
        for pattern in loaded.get("runengine_topics") or []:
            if "{document_name}" in pattern:
                continue  # per-document topics: the documents topic carries every document
            if "{endstation}" in pattern and not beamline:
                raise ValueError(f"{path}: runengine_topics need --beamline ({pattern})")
            topics.append(pattern.format(endstation=(beamline or "").lower()))
        return cls(bootstrap_servers=list(servers), topics=topics, consumer_config=config)

    def librdkafka_config(self) -> dict[str, Any]:
        """The consumer's settings: manual commits, earliest for a new group, large messages;
        the file's and the command line's settings win."""
        if not self.bootstrap_servers:
            raise ValueError("no Kafka bootstrap servers (--kafka or the configuration file)")
        config: dict[str, Any] = {
            "bootstrap.servers": ",".join(self.bootstrap_servers),
            "group.id": self.group_id,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            # a member joining the group does not take partitions from a member reading them
            "partition.assignment.strategy": "cooperative-sticky",
            "fetch.max.bytes": LARGE_MESSAGE_BYTES,
            "max.partition.fetch.bytes": LARGE_MESSAGE_BYTES,
            "receive.message.max.bytes": LARGE_MESSAGE_BYTES + MiB,
        }
        config.update(self.consumer_config)
        return config


def parse_options(pairs: Sequence[str]) -> dict[str, Any]:
    """``KEY=VALUE`` strings as librdkafka settings (integers and booleans converted)."""
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"expected KEY=VALUE, got {pair!r}")
        options[key.strip()] = _typed(value.strip())
    return options


def _typed(value: str) -> Any:
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    try:
        return int(value)
    except ValueError:
        return value
