"""NATS JetStream: read bluesky-nats's messages (subject ``<prefix>.<document name>``, the document
as msgpack, arrays as nested lists, made arrays again with their descriptor's dtype) through one
durable pull consumer, acknowledged by hand.

One consumer process at a time holds the lease (a key in a JetStream key-value bucket whose
entries expire after ``lease_s``; the holder renews it every third of that). A standby waits for
the lease; whoever takes it re-creates the durable consumer at the stream sequence after the last
acknowledged message (its ack floor, ``AckPolicy.ALL``), so documents arrive in order from the
last acknowledgement whatever the previous holder had fetched.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from atomscale_bluesky.apps.buses.bus_message import BusDocument, LaneLost
from atomscale_bluesky.apps.buses.nested_arrays import NestedArrays

__all__ = [
    "LeaseLost",
    "NatsLedgerStore",
    "NatsSettings",
    "NatsSource",
    "StreamPosition",
    "decode_message",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")
BATCH = 256
ACK_WAIT_S = 3600.0


@dataclass(frozen=True)
class StreamPosition:
    """A received message: its stream sequence (what logs show) and the message to acknowledge."""

    stream_seq: int
    message: Any = field(repr=False, compare=False)


class LeaseLost(LaneLost):
    """Another consumer holds the lease now: this one must stop consuming."""


@dataclass
class NatsSettings:
    """Server, stream, the publishers' subjects, the durable consumer and its lease."""

    servers: list[str]
    stream: str = "bluesky"
    subject: str = "events.>"
    durable: str = "atomscale-bluesky"
    lease_bucket: str = "atomscale_bluesky_leases"
    ledger_bucket: str = "atomscale_bluesky_runs"
    lease_s: float = 15.0


def decode_message(subject: str, payload: bytes) -> tuple[str, dict[str, Any]]:
    """bluesky-nats's serialisation: the subject's last token is the name, the payload msgpack."""
    import msgpack

    doc = msgpack.unpackb(payload, strict_map_key=False)
    return subject.rsplit(".", 1)[-1], doc


class NatsSource:
    """A durable JetStream pull consumer driven from a private asyncio loop thread."""

    def __init__(self, settings: NatsSettings) -> None:
        self.settings = settings
        self.description = (
            f"NATS JetStream {settings.servers} stream {settings.stream!r} subjects "
            f"{settings.subject!r} (durable {settings.durable!r})"
        )
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="nats-loop", daemon=True
        )
        self._thread.start()
        self._holder = f"{socket.gethostname()}:{os.getpid()}"
        self._nc: Any = None
        self._js: Any = None
        self._kv: Any = None
        self._sub: Any = None
        self._revision = 0
        self._renewed = 0.0
        self._waiting_logged = False
        self._last_seq = 0
        self._arrays = NestedArrays()
        self.lost: LeaseLost | None = None
        self._call(self._connect())

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    async def _connect(self) -> None:
        import nats
        from nats.js.api import KeyValueConfig, StorageType, StreamConfig
        from nats.js.errors import NotFoundError

        self._nc = await nats.connect(
            servers=self.settings.servers,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.5,
            name=f"atomscale-bluesky {self._holder}",
        )
        self._js = self._nc.jetstream()
        try:
            await self._js.stream_info(self.settings.stream)
        except NotFoundError:
            await self._js.add_stream(
                StreamConfig(
                    name=self.settings.stream,
                    subjects=[self.settings.subject],
                    storage=StorageType.FILE,
                )
            )
            logger.info("created JetStream stream %r", self.settings.stream)
        self._kv = await self._js.create_key_value(
            KeyValueConfig(
                bucket=self.settings.lease_bucket,
                ttl=self.settings.lease_s,
                storage=StorageType.FILE,
            )
        )

    # -- the lease ------------------------------------------------------------------------------

    async def _take_lease(self) -> bool:
        from nats.js.errors import KeyWrongLastSequenceError

        try:
            self._revision = await self._kv.create(self.settings.durable, self._holder.encode())
        except KeyWrongLastSequenceError:
            return False
        self._renewed = time.monotonic()
        return True

    async def _renew_lease(self) -> None:
        from nats.js.errors import KeyWrongLastSequenceError

        try:
            self._revision = await self._kv.update(
                self.settings.durable, self._holder.encode(), last=self._revision
            )
        except KeyWrongLastSequenceError:
            if not await self._take_lease() and not await self._still_ours():
                raise LeaseLost(f"another consumer holds {self.settings.durable!r}") from None
        self._renewed = time.monotonic()

    async def _still_ours(self) -> bool:
        """Whether the lease names this consumer (a renewal the server applied but whose answer
        was lost, leaving our revision behind); if so, take up its revision."""
        from nats.js.errors import KeyDeletedError, KeyNotFoundError

        try:
            entry = await self._kv.get(self.settings.durable)
        except (KeyNotFoundError, KeyDeletedError):
            return await self._take_lease()
        if entry.value != self._holder.encode():
            return False
        self._revision = int(entry.revision or 0)
        return await self._renew_once()

    async def _renew_once(self) -> bool:
        from nats.js.errors import KeyWrongLastSequenceError

        try:
            self._revision = await self._kv.update(
                self.settings.durable, self._holder.encode(), last=self._revision
            )
        except KeyWrongLastSequenceError:
            return False
        return True

    async def _bind(self) -> None:
        """Re-create the durable consumer at the message after the last acknowledged one."""
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
        from nats.js.errors import NotFoundError

        stream, durable = self.settings.stream, self.settings.durable
        config = ConsumerConfig(
            durable_name=durable,
            ack_policy=AckPolicy.ALL,
            max_ack_pending=-1,
            ack_wait=ACK_WAIT_S,
            filter_subject=self.settings.subject,
            deliver_policy=DeliverPolicy.ALL,
        )
        try:
            info = await self._js.consumer_info(stream, durable)
        except NotFoundError:
            info = None
        if info is not None:
            floor = int(info.ack_floor.stream_seq or 0)
            await self._js.delete_consumer(stream, durable)
            if floor > 0:
                config.deliver_policy = DeliverPolicy.BY_START_SEQUENCE
                config.opt_start_seq = floor + 1
            self._last_seq = floor
        await self._js.add_consumer(stream, config)
        self._sub = await self._js.pull_subscribe_bind(durable, stream)
        logger.info(
            "took the lease of %r: reading stream %r from sequence %d",
            durable,
            stream,
            self._last_seq + 1,
        )

    # -- BusSource --------------------------------------------------------------------------------

    def receive(self, timeout: float) -> Sequence[BusDocument]:
        if self.lost is not None:
            raise self.lost
        try:
            return self._call(self._receive(timeout), timeout + 30)
        except LeaseLost as exc:
            self.lost = exc
            raise
        except Exception as exc:  # noqa: BLE001 - the broker away: retry on the next call
            logger.warning("NATS: %s: %s", type(exc).__name__, exc)
            time.sleep(min(timeout, 0.5))
            return []

    async def _receive(self, timeout: float) -> list[BusDocument]:
        import nats.errors

        if self._sub is None:
            if not await self._take_lease():
                if not self._waiting_logged:
                    logger.info("standby: another consumer holds %r", self.settings.durable)
                    self._waiting_logged = True
                await asyncio.sleep(min(timeout, self.settings.lease_s / 3))
                return []
            await self._bind()
        if time.monotonic() - self._renewed > self.settings.lease_s / 3:
            await self._renew_lease()
        try:
            messages = await self._sub.fetch(BATCH, timeout=timeout)
        except nats.errors.TimeoutError:
            return []
        documents: list[BusDocument] = []
        for message in messages:
            seq = int(message.metadata.sequence.stream)
            if seq <= self._last_seq:
                continue  # redelivered to us after ack_wait: already handled
            self._last_seq = seq
            try:
                name, doc = decode_message(message.subject, message.data)
                doc = self._arrays(name, doc)
            except Exception as exc:  # noqa: BLE001 - a bad message is logged and passed over
                logger.error("undecodable message %s seq %d: %s", message.subject, seq, exc)
                continue
            documents.append(
                BusDocument(name, doc, self.settings.durable, StreamPosition(seq, message))
            )
        return documents

    def commit(self, position: Any) -> None:
        self._call(position.message.ack_sync(timeout=5.0), 30)

    def ledger_store(self) -> NatsLedgerStore:
        """The run ledger in a key-value bucket of this server, shared with the standbys."""
        return NatsLedgerStore(self)

    async def _ledger_bucket(self) -> Any:
        from nats.js.api import KeyValueConfig, StorageType

        return await self._js.create_key_value(
            KeyValueConfig(
                bucket=self.settings.ledger_bucket,
                history=1,
                max_bytes=64 * 1024 * 1024,
                storage=StorageType.FILE,
            )
        )

    def close(self) -> None:
        async def shut() -> None:
            if self._sub is not None and self._kv is not None and self.lost is None:
                try:
                    await self._kv.delete(self.settings.durable)  # hand over at once
                except Exception as exc:  # noqa: BLE001
                    logger.warning("could not release the lease: %s", exc)
            if self._nc is not None:
                await self._nc.close()

        try:
            self._call(shut(), 30)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)


class NatsLedgerStore:
    """Run ledger entries (JSON) keyed by run uid in a JetStream key-value bucket."""

    def __init__(self, source: NatsSource) -> None:
        self._source = source
        self._bucket: Any = None
        self.description = f"JetStream bucket {source.settings.ledger_bucket!r}"

    async def _kv(self) -> Any:
        if self._bucket is None:
            self._bucket = await self._source._ledger_bucket()
        return self._bucket

    def get(self, uid: str) -> dict[str, Any] | None:
        from nats.js.errors import KeyDeletedError, KeyNotFoundError

        async def read() -> dict[str, Any] | None:
            try:
                entry = await (await self._kv()).get(_ledger_key(uid))
            except (KeyNotFoundError, KeyDeletedError):
                return None
            return json.loads(entry.value) if entry.value else None

        return self._source._call(read(), 30)

    def put(self, uid: str, entry: dict[str, Any]) -> None:
        async def write() -> None:
            await (await self._kv()).put(_ledger_key(uid), json.dumps(entry).encode())

        self._source._call(write(), 30)


def _ledger_key(uid: str) -> str:
    """A run uid as a key-value key (letters, digits, ``-``, ``_``, ``=``, ``.``, ``/``)."""
    return "".join(c if c.isalnum() or c in "-_=" else "_" for c in uid)
