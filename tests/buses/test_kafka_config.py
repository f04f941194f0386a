"""The NSLS-II Kafka configuration file as the consumer reads it."""

from __future__ import annotations

import pytest

from atomscale_bluesky.apps.buses.kafka_config import (
    KafkaSettings,
    beamline_topic,
    config_file_path,
    parse_options,
)

NSLS2_FILE = """\
---
  abort_run_on_kafka_exception: false
  bootstrap_servers:
    - kafka1:9092
    - kafka2:9092
  producer_consumer_security_config:
    security.protocol: SASL_SSL
    sasl.mechanisms: PLAIN
  consumer_config:
    auto.offset.reset: latest
  runengine_producer_config:
    compression.codec: snappy
  runengine_topics:
    - "{endstation}.bluesky.runengine.documents"
    - "{endstation}.bluesky.runengine.{document_name}.documents"
"""


def test_the_file_gives_servers_topics_and_consumer_settings(tmp_path):
    path = tmp_path / "kafka.yml"
    path.write_text(NSLS2_FILE)
    settings = KafkaSettings.from_file(path, "RHEED")
    assert settings.bootstrap_servers == ["kafka1:9092", "kafka2:9092"]
    assert settings.topics == [beamline_topic("rheed")] == ["rheed.bluesky.runengine.documents"]
    config = settings.librdkafka_config()
    assert config["bootstrap.servers"] == "kafka1:9092,kafka2:9092"
    assert config["security.protocol"] == "SASL_SSL"
    assert config["auto.offset.reset"] == "latest"  # the file wins over our default
    assert config["enable.auto.commit"] is False
    assert config["group.id"] == "atomscale-bluesky"


def test_topics_with_endstation_need_a_beamline(tmp_path):
    path = tmp_path / "kafka.yml"
    path.write_text(NSLS2_FILE)
    with pytest.raises(ValueError, match="--beamline"):
        KafkaSettings.from_file(path, None)


def test_the_variable_names_the_file_and_an_explicit_path_wins(tmp_path):
    env = {"BLUESKY_KAFKA_CONFIG_PATH": str(tmp_path / "env.yml")}
    assert config_file_path(None, env) == tmp_path / "env.yml"
    assert config_file_path(str(tmp_path / "cli.yml"), env) == tmp_path / "cli.yml"


def test_options_are_typed_and_malformed_ones_refused():
    assert parse_options(["session.timeout.ms=6000", "enable.partition.eof=true", "a=b"]) == {
        "session.timeout.ms": 6000,
        "enable.partition.eof": True,
        "a": "b",
    }
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_options(["no-equals"])
    with pytest.raises(ValueError, match="bootstrap servers"):
        KafkaSettings(topics=["t"]).librdkafka_config()
