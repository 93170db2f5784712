"""Where outputs go: alerts, shadow alerts, dead letters, next-stage messages and changelog
records.

A `Sink` takes a message and returns, once it has taken it in order, an awaitable that
resolves when the message is acknowledged. Kafka in the worker (`KafkaSink`, `KafkaChangelog`,
both on one aiokafka producer), a list in tests (`ListSink`), standard output in `replay`
(`StreamSink`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO, NamedTuple, Protocol

import orjson

from service.core.models import Alert
from service.runtime.tables import ChangelogRecord


class Delivery(NamedTuple):
    partition: int
    offset: int


class Sink(Protocol):
    async def send(
        self, value: bytes, key: bytes | None = None, partition: int | None = None
    ) -> Awaitable[Delivery]: ...


def alert_message(alert: Alert) -> tuple[bytes, bytes]:
    """Key and value of an alert: keyed by subject, so one account's alerts stay in order. A
    `ShadowAlert`'s value is the same plus `"mode": "shadow"`."""
    return alert.subject_id.encode(), orjson.dumps(alert.model_dump(mode="json"))


def _done(delivery: Delivery) -> asyncio.Future[Delivery]:
    future: asyncio.Future[Delivery] = asyncio.get_running_loop().create_future()
    future.set_result(delivery)
    return future


@dataclass
class ListSink:
    """Messages in a list, acknowledged at once. `fail` makes the next sends raise."""

    messages: list[tuple[bytes | None, bytes, int | None]] = field(default_factory=list)
    fail: Exception | None = None

    async def send(
        self, value: bytes, key: bytes | None = None, partition: int | None = None
    ) -> Awaitable[Delivery]:
        if self.fail is not None:
            raise self.fail
        self.messages.append((key, value, partition))
        return _done(Delivery(partition if partition is not None else 0, len(self.messages) - 1))

    def values(self) -> list[Any]:
        return [orjson.loads(value) for _, value, _ in self.messages]


class StreamSink:
    """One message per line on a binary stream (`replay`'s stdout)."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._written = 0

    async def send(
        self, value: bytes, key: bytes | None = None, partition: int | None = None
    ) -> Awaitable[Delivery]:
        self._stream.write(value + b"\n")
        self._written += 1
        return _done(Delivery(0, self._written - 1))


class KafkaSink:
    """One topic through an aiokafka producer."""

    def __init__(self, producer: Any, topic: str) -> None:
        self._producer = producer
        self.topic = topic

    async def send(
        self, value: bytes, key: bytes | None = None, partition: int | None = None
    ) -> Awaitable[Delivery]:
        sent = await self._producer.send(self.topic, value, key=key, partition=partition)
        return _delivery(sent)


async def _delivery(sent: Awaitable[Any]) -> Delivery:
    metadata = await sent
    return Delivery(metadata.partition, metadata.offset)


class KafkaChangelog:
    """A table's changelog topic. A commit's records go out as producer batches (one future per
    batch, not per record), to the partition of the message that wrote them: the key's own,
    since every stage topic and table has the same partition count and key hashing."""

    def __init__(self, producer: Any, topic: str) -> None:
        self._producer = producer
        self.topic = topic

    async def send(self, partition: int, records: Sequence[ChangelogRecord]) -> Awaitable[int]:
        producer = self._producer
        sent: list[Awaitable[Any]] = []
        batch = producer.create_batch()
        count = 0
        for key, value in records:
            if batch.append(key=key, value=value, timestamp=None) is None:
                sent.append(await producer.send_batch(batch, self.topic, partition=partition))
                batch = producer.create_batch()
                batch.append(key=key, value=value, timestamp=None)  # the first always fits
                count = 0
            count += 1
        sent.append(await producer.send_batch(batch, self.topic, partition=partition))
        return _last_offset(sent, count)


async def _last_offset(sent: list[Awaitable[Any]], last_batch_records: int) -> int:
    # A batch's future gives the offset of its first record; the others follow it.
    metadata = await asyncio.gather(*sent)
    return int(metadata[-1].offset) + last_batch_records - 1
