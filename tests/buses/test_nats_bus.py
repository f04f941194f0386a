"""IOCs -> RunEngine -> bluesky-nats publisher -> nats-server (JetStream) -> ``consume`` -> server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from .bus_runs import (
    assert_every_frame_stored,
    assert_every_point_stored,
    assert_runs_stored,
    assert_stored_exactly_once,
    growth_run,
    large_and_file_runs,
    start_consumer,
    stored_chunks,
    wait_for_finalized,
    wait_until,
)

pytest.importorskip("bluesky_nats")
pytest.importorskip("ophyd_async")

LEASE_S = "3"


@pytest.fixture
def nats_publisher(nats_server: Any) -> Iterator[Any]:
    """bluesky-nats's publisher with its own runtime thread, publishing to ``events.bus.*``."""
    import nats
    from bluesky_nats.nats_publisher import NATSPublisher
    from bluesky_nats.nats_runtime import NatsRuntime
    from bluesky_nats.outbox import Delivery, Outbox

    runtime = NatsRuntime()
    client = runtime.connect(nats.connect(servers=[nats_server.url], reconnect_time_wait=0.2))
    outbox = Outbox(runtime, client, delivery=Delivery.CRITICAL)
    publisher = NATSPublisher(outbox, client.jetstream(), subject_factory="events.bus")
    publisher.client = client
    try:
        yield publisher
    finally:
        publisher.close()
        runtime.close()


def consumer_args(nats_server: Any) -> list[str]:
    return ["--nats", nats_server.url, "--lease-s", LEASE_S]


def test_every_frame_and_point_reaches_the_server_through_nats(
    RE, camera_ioc, sensors_ioc, local_server, nats_server, nats_publisher, tmp_path
):
    consumer = start_consumer(
        consumer_args(nats_server), local_server, tmp_path / "spool", tmp_path / "consumer.log"
    )
    try:
        consumer.wait_for("took the lease")
        truth = growth_run(RE, camera_ioc, sensors_ioc, nats_publisher, [(120, None)])
        consumer.wait_for("acknowledged")
        consumer.wait_for("Atomscale run")
    finally:
        assert consumer.stop() == 0, consumer.text()
    assert_every_frame_stored(local_server, truth)
    assert_every_point_stored(local_server, truth)
    assert local_server.api_key not in consumer.text()


def test_a_consumer_killed_mid_run_restarts_from_the_last_acknowledgement(
    RE, camera_ioc, sensors_ioc, local_server, nats_server, nats_publisher, tmp_path
):
    spool, log = tmp_path / "spool", tmp_path / "consumer.log"
    consumers = [start_consumer(consumer_args(nats_server), local_server, spool, log)]
    consumers[0].wait_for("took the lease")

    def kill_and_restart() -> Iterator[Any]:
        yield from wait_until(lambda: stored_chunks(local_server) >= 1)
        consumers[0].kill()
        consumers.append(start_consumer(consumer_args(nats_server), local_server, spool, log))

    try:
        truth = growth_run(
            RE, camera_ioc, sensors_ioc, nats_publisher, [(60, kill_and_restart), (200, None)]
        )
        consumers[-1].wait_for("cut by a restart")
        consumers[-1].wait_for("acknowledged")
        consumers[-1].wait_for("Atomscale run")
    finally:
        assert consumers[-1].stop() == 0, consumers[-1].text()
    assert_stored_exactly_once(local_server, truth)


def active_and_standby(nats_server: Any, local_server: Any, tmp_path: Any) -> tuple[Any, Any]:
    """Two consumers of one durable: the first holds the lease, the second waits as standby."""
    active = start_consumer(
        consumer_args(nats_server), local_server, tmp_path / "spool-a", tmp_path / "a.log"
    )
    active.wait_for("took the lease")
    standby = start_consumer(
        consumer_args(nats_server), local_server, tmp_path / "spool-b", tmp_path / "b.log"
    )
    standby.wait_for("standby")
    return active, standby


def test_a_standby_takes_over_a_dead_consumer(
    RE, camera_ioc, sensors_ioc, local_server, nats_server, nats_publisher, tmp_path
):
    active, standby = active_and_standby(nats_server, local_server, tmp_path)

    def kill_active() -> Iterator[Any]:
        yield from wait_until(lambda: stored_chunks(local_server) >= 1)
        active.kill()

    try:
        truth = growth_run(
            RE, camera_ioc, sensors_ioc, nats_publisher, [(60, kill_active), (200, None)]
        )
        standby.wait_for("took the lease")
        standby.wait_for("acknowledged")
        standby.wait_for("Atomscale run")
    finally:
        assert standby.stop() == 0, standby.text()
    assert "cut by a restart" in standby.text()
    assert_stored_exactly_once(local_server, truth)


def test_a_consumer_frozen_past_its_lease_ends_when_it_wakes(
    RE, camera_ioc, sensors_ioc, local_server, nats_server, nats_publisher, tmp_path
):
    """The active consumer stops (SIGSTOP) mid-run for longer than its lease; the standby takes
    the lease and streams the run into the same streams. Woken, the first one finds its lease
    gone and exits at once (status 75) without flushing its half of the run over the standby's
    chunks: every frame and point is on the server once."""
    import signal

    active, standby = active_and_standby(nats_server, local_server, tmp_path)

    def freeze_active() -> Iterator[Any]:
        yield from wait_until(lambda: stored_chunks(local_server) >= 1)
        active.process.send_signal(signal.SIGSTOP)
        yield from wait_until(lambda: "took the lease" in standby.text())

    try:
        truth = growth_run(
            RE, camera_ioc, sensors_ioc, nats_publisher, [(60, freeze_active), (200, None)]
        )
        standby.wait_for("acknowledged")
        standby.wait_for("Atomscale run")
    finally:
        active.process.send_signal(signal.SIGCONT)
        assert active.process.wait(120) == 75, active.text()
        assert standby.stop() == 0, standby.text()
    assert "ending this process now" in active.text()
    assert "cut by a restart" in standby.text()
    assert_stored_exactly_once(local_server, truth)


def test_the_broker_restarted_mid_run_loses_nothing(
    RE, camera_ioc, sensors_ioc, local_server, nats_server, nats_publisher, tmp_path
):
    consumer = start_consumer(
        consumer_args(nats_server), local_server, tmp_path / "spool", tmp_path / "consumer.log"
    )
    consumer.wait_for("took the lease")

    def restart_broker() -> Iterator[Any]:
        from bluesky import plan_stubs as bps

        yield from wait_until(lambda: stored_chunks(local_server) >= 1)
        nats_server.restart()
        yield from wait_until(lambda: nats_publisher.client.is_connected)
        yield from bps.null()

    try:
        truth = growth_run(
            RE,
            camera_ioc,
            sensors_ioc,
            nats_publisher,
            [(120, restart_broker), (240, None)],  # the first chunk is cut at 80 frames
            sensors=False,
            pause_camera=True,
        )
        consumer.wait_for("acknowledged")
        consumer.wait_for("Atomscale run")
    finally:
        assert consumer.stop() == 0, consumer.text()
    _, duplicates = assert_every_frame_stored(local_server, truth)
    assert duplicates == 0


def test_large_frames_in_event_pages_and_frames_in_files_go_through_nats(
    local_server, nats_server, nats_publisher, tmp_path
):
    """1024x1024 frames inline in event pages (about 4.5 MB as nested lists: the server's
    max_payload raised to 8 MB) and frames by reference (HDF5 resource/datum, stream_resource)."""
    runs, cameras = large_and_file_runs(tmp_path)
    consumer = start_consumer(
        consumer_args(nats_server), local_server, tmp_path / "spool", tmp_path / "consumer.log"
    )
    try:
        consumer.wait_for("took the lease")
        for run in runs:
            for name, doc in run.docs:
                nats_publisher(name, doc)
        assert wait_for_finalized(local_server, 3), consumer.text()
    finally:
        assert consumer.stop() == 0, consumer.text()
    assert "3 run(s) spooled" in consumer.text()
    assert_runs_stored(local_server, cameras)


def test_a_renewal_applied_but_unanswered_keeps_the_lease(nats_server):
    """The server applied a lease renewal whose answer never came back (a slow or restarting
    server): the lease still names this consumer, which keeps it instead of stopping."""
    from atomscale_bluesky.apps.buses.nats_bus import NatsSettings, NatsSource

    source = NatsSource(NatsSettings(servers=[nats_server.url], lease_s=30.0))
    try:
        assert source.receive(0.2) == []  # takes the lease, binds the durable consumer
        durable, holder = source.settings.durable, source._holder.encode()
        source._call(source._kv.update(durable, holder, last=source._revision))  # answer "lost"
        source._renewed = 0.0  # renew on the next receive
        assert source.receive(0.2) == []
        assert source.lost is None
        assert source._call(source._kv.get(durable)).revision == source._revision
    finally:
        source.close()
