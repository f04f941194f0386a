"""IOCs -> RunEngine -> bluesky-kafka Publisher -> Kafka broker (Tansu) -> ``consume`` -> server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from plugins.ioc_fixtures import wait_for

from .bus_runs import (
    assert_every_frame_stored,
    assert_every_point_stored,
    assert_runs_stored,
    assert_stored_exactly_once,
    growth_run,
    large_and_file_runs,
    rheed_streams,
    start_consumer,
    stored_chunks,
    wait_for_finalized,
    wait_until,
)

pytest.importorskip("bluesky_kafka")
pytest.importorskip("ophyd_async")

BEAMLINE = "rheed"
TOPIC = "rheed.bluesky.runengine.documents"
# a dead member leaves the group after session.timeout.ms: short here, seconds in production
GROUP_OPTIONS = ["--kafka-option", "session.timeout.ms=6000", "--kafka-option", "heartbeat.interval.ms=500"]  # fmt: skip


@pytest.fixture
def kafka_publisher(kafka_broker: Any) -> Iterator[Any]:
    """bluesky-kafka's Publisher on the beamline topic, keyed by RunEngine (one partition)."""
    from bluesky_kafka import Publisher

    kafka_broker.create_topic(TOPIC)
    publisher = Publisher(
        topic=TOPIC,
        bootstrap_servers=kafka_broker.bootstrap,
        key="chamber-1",
        producer_config={"acks": "all", "enable.idempotence": False},
        flush_on_stop_doc=True,
    )
    yield publisher
    publisher.flush()


def consumer_args(kafka_broker: Any, config_file: Any) -> list[str]:
    config_file.write_text(
        "---\n"
        "abort_run_on_kafka_exception: true\n"
        f"bootstrap_servers:\n  - {kafka_broker.bootstrap}\n"
        "runengine_producer_config:\n  acks: all\n"
        "runengine_topics:\n  - '{endstation}.bluesky.runengine.documents'\n"
    )
    return ["--kafka-config", str(config_file), "--beamline", BEAMLINE, *GROUP_OPTIONS]


def assignments(consumer: Any) -> list[str]:
    return [line for line in consumer.text().splitlines() if "kafka_bus: assigned" in line]


def owns_partition(consumer: Any) -> bool:
    """Whether the consumer's log says it holds the partition now (assignments are incremental:
    cooperative-sticky)."""
    owned = False
    for line in consumer.text().splitlines():
        if f"'{TOPIC}[0]'" in line and "kafka_bus: assigned" in line:
            owned = True
        elif f"'{TOPIC}[0]'" in line and "kafka_bus: revoked" in line:
            owned = False
    return owned


def test_every_frame_and_point_reaches_the_server_through_kafka(
    RE, camera_ioc, sensors_ioc, local_server, kafka_broker, kafka_publisher, tmp_path
):
    args = consumer_args(kafka_broker, tmp_path / "kafka.yml")
    consumer = start_consumer(args, local_server, tmp_path / "spool", tmp_path / "consumer.log")
    try:
        consumer.wait_for(f"assigned ['{TOPIC}[0]']")
        truth = growth_run(RE, camera_ioc, sensors_ioc, kafka_publisher, [(120, None)])
        consumer.wait_for("acknowledged")
        consumer.wait_for("Atomscale run")
    finally:
        assert consumer.stop() == 0, consumer.text()
    assert_every_frame_stored(local_server, truth)
    assert_every_point_stored(local_server, truth)


def test_a_consumer_killed_mid_run_restarts_from_the_last_commit(
    RE, camera_ioc, sensors_ioc, local_server, kafka_broker, kafka_publisher, tmp_path
):
    args = consumer_args(kafka_broker, tmp_path / "kafka.yml")
    spool, log = tmp_path / "spool", tmp_path / "consumer.log"
    consumers = [start_consumer(args, local_server, spool, log)]
    consumers[0].wait_for(f"assigned ['{TOPIC}[0]']")

    def kill_and_restart() -> Iterator[Any]:
        yield from wait_until(lambda: stored_chunks(local_server) >= 1)
        consumers[0].kill()
        consumers.append(start_consumer(args, local_server, spool, log))

    try:
        truth = growth_run(
            RE, camera_ioc, sensors_ioc, kafka_publisher, [(60, kill_and_restart), (200, None)]
        )
        consumers[-1].wait_for("cut by a restart")
        consumers[-1].wait_for("acknowledged")
        consumers[-1].wait_for("Atomscale run")
    finally:
        assert consumers[-1].stop() == 0, consumers[-1].text()
    assert_stored_exactly_once(local_server, truth)


def test_a_standby_in_the_group_takes_over_a_dead_consumer(
    RE, camera_ioc, sensors_ioc, local_server, kafka_broker, kafka_publisher, tmp_path
):
    args = consumer_args(kafka_broker, tmp_path / "kafka.yml")
    first = start_consumer(args, local_server, tmp_path / "spool-a", tmp_path / "a.log")
    first.wait_for(f"assigned ['{TOPIC}[0]']")
    second = start_consumer(args, local_server, tmp_path / "spool-b", tmp_path / "b.log")

    def settled() -> bool:  # the second member joined: one member holds the partition
        return bool(assignments(second)) and owns_partition(first) != owns_partition(second)

    assert wait_for(settled, timeout=120), first.text() + second.text()
    active, standby = (first, second) if owns_partition(first) else (second, first)

    def kill_active() -> Iterator[Any]:
        yield from wait_until(lambda: stored_chunks(local_server) >= 1)
        active.kill()

    try:
        truth = growth_run(
            RE, camera_ioc, sensors_ioc, kafka_publisher, [(60, kill_active), (200, None)]
        )
        assert wait_for(lambda: owns_partition(standby), timeout=120), standby.text()
        standby.wait_for("acknowledged")
        standby.wait_for("Atomscale run")
    finally:
        assert standby.stop() == 0, standby.text()
    assert "cut by a restart" in standby.text()
    assert_stored_exactly_once(local_server, truth)


def test_a_consumer_joining_the_group_mid_run_loses_nothing(
    RE, camera_ioc, sensors_ioc, local_server, kafka_broker, kafka_publisher, tmp_path
):
    """A second member joins while a run streams: the group rebalances; whichever member ends
    up with the partition finishes the run (a member that loses a partition with an open run
    exits, as after a crash), and the server holds every frame and point once."""
    args = consumer_args(kafka_broker, tmp_path / "kafka.yml")
    first = start_consumer(args, local_server, tmp_path / "spool-a", tmp_path / "a.log")
    first.wait_for(f"assigned ['{TOPIC}[0]']")
    joined: list[Any] = []

    def join() -> Iterator[Any]:
        yield from wait_until(lambda: stored_chunks(local_server) >= 1)
        joined.append(start_consumer(args, local_server, tmp_path / "spool-b", tmp_path / "b.log"))
        yield from wait_until(lambda: bool(assignments(joined[0])))

    try:
        truth = growth_run(RE, camera_ioc, sensors_ioc, kafka_publisher, [(60, join), (200, None)])
        assert wait_for(
            lambda: any("Atomscale run" in c.text() for c in (first, *joined)), timeout=120
        ), first.text() + joined[0].text()
    finally:
        for consumer in (first, *joined):
            assert consumer.stop() in (0, 75), consumer.text()
    assert_stored_exactly_once(local_server, truth)


def test_large_frames_in_event_pages_and_frames_in_files_go_through_kafka(
    local_server, kafka_broker, tmp_path
):
    """1024x1024 frames inline in event pages (3 MiB messages: the producer's limit raised) and
    frames by reference (areaDetector HDF5 resource/datum, ophyd-async stream_resource/datum)."""
    from bluesky_kafka import Publisher

    runs, cameras = large_and_file_runs(tmp_path)
    kafka_broker.create_topic(TOPIC)
    publisher = Publisher(
        topic=TOPIC,
        bootstrap_servers=kafka_broker.bootstrap,
        key="chamber-1",
        producer_config={"message.max.bytes": 16_000_000},
        flush_on_stop_doc=True,
    )
    for run in runs:
        for name, doc in run.docs:
            publisher(name, doc)
    publisher.flush()

    args = consumer_args(kafka_broker, tmp_path / "kafka.yml")
    consumer = start_consumer(args, local_server, tmp_path / "spool", tmp_path / "consumer.log")
    try:
        assert wait_for_finalized(local_server, 3), consumer.text()
    finally:
        assert consumer.stop() == 0, consumer.text()
    assert "3 run(s) spooled" in consumer.text()
    assert_runs_stored(local_server, cameras)


def test_a_redelivered_run_already_in_the_spool_is_not_uploaded_twice(
    local_server, kafka_broker, tmp_path
):
    """The second consumer reads the topic again from the start (as after a crash between
    spooling and committing); the ledger (a file both are given) knows the run is spooled and
    skips it."""
    from bluesky_kafka import Publisher
    from callback.docs import RunDocs, camera_stream, make_camera

    camera = make_camera("cam_image", 30, h=48, w=64, fps=10.0, seed=5)
    run = RunDocs.start(name="bus once", sample="bus wafer", fps=10.0)
    camera_stream(run, [camera], form="page", page_size=4)
    run.stop()
    kafka_broker.create_topic(TOPIC)
    publisher = Publisher(topic=TOPIC, bootstrap_servers=kafka_broker.bootstrap, key="chamber-1")
    for name, doc in run.docs:
        publisher(name, doc)
    publisher.flush()

    args = [
        *consumer_args(kafka_broker, tmp_path / "kafka.yml"),
        "--ledger",
        str(tmp_path / "runs.json"),
    ]
    spool = tmp_path / "spool"
    first = start_consumer([*args, "--group-id", "first"], local_server, spool, tmp_path / "1.log")
    try:
        assert wait_for_finalized(local_server, 1), first.text()
        first.wait_for("acknowledged")
    finally:
        assert first.stop() == 0, first.text()
    second = start_consumer(
        [*args, "--group-id", "second"], local_server, spool, tmp_path / "2.log"
    )
    try:
        second.wait_for("already in the spool")
        second.wait_for("acknowledged")
    finally:
        assert second.stop() == 0, second.text()
    assert "0 run(s) spooled, 1 run(s) skipped as already spooled" in second.text()
    (stream,) = rheed_streams(local_server)
    np.testing.assert_array_equal(local_server.reader.frames(stream["data_id"]), camera.frames)
