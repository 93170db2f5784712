"""Stage messages: how events travel between the worker's stages.

One Kafka message carries many items: every consumed message costs a framework ~200 µs. The
unit of delivery is a *part*: what one upstream message sends to one partition (cut into
chunks by size). A stage message packs the parts of every upstream message applied in one
round (`runtime.checkpoint.Forwards`), so the fan-out of N upstream partitions to N downstream
ones is N messages a round, not N per upstream message. Its value is a JSON array
`[[origin, ...], item, item, ...]`:

- each `origin` is `[partition, offset, chunk, count]`: the upstream stage message (and which
  chunk of its output to this partition) that the next `count` items come from;
  `[-1, -1, chunk, count]` from ingest. A stage that has applied an origin's chunk skips a
  second copy of it (a replayed upstream message sends the same chunks again, however they
  are packed the second time): see `runtime.progress`. A chunk is never split between
  messages, so what a chunk holds depends on its upstream message alone.
- each item is a compact JSON array, one codec per item type below (an alert on its way to the
  quota stage is the alert's JSON object). Items were validated at ingest, so decoding trusts
  them.

A stage message stays below `max_message_bytes` (split by serialized bytes), under the
producer's 1,000,000-byte request limit and the broker's default 1 MiB message limit. Messages
of the earlier one-part format, `[[partition, offset, chunk], item, ...]`, are still read.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache
from typing import Any, NamedTuple

import orjson
from aiokafka.partitioner import murmur2

from service.core.context import StrangerRequest, TargetMessage
from service.core.models import Alert, Event, EventType, trusted_event, trusted_snapshot

# Well below the limits above: a message of this size is one produce request.
MAX_MESSAGE_BYTES = 512 * 1024


class Origin(NamedTuple):
    partition: int
    offset: int
    chunk: int


FROM_INGEST = -1


@lru_cache(maxsize=1 << 20)
def partition_for(key: str, partitions: int) -> int:
    """The partition Kafka's default partitioner picks for this key (murmur2, as in Java)."""
    return int(murmur2(key.encode()) & 0x7FFFFFFF) % partitions


# Room left in a message for its origins list, per part.
_ORIGIN_BYTES = 64


class Chunk(NamedTuple):
    """Items of one upstream message for one partition, at most a message's worth."""

    partition: int
    origin: Origin
    items: list[bytes]
    size: int


class StageOutbox:
    """Items grouped by destination partition, cut into chunks that each fit one message."""

    def __init__(self, max_message_bytes: int = MAX_MESSAGE_BYTES) -> None:
        self._items: dict[int, list[bytes]] = {}
        self._max_bytes = max_message_bytes

    def add(self, partition: int, item: list[Any] | dict[str, Any]) -> None:
        encoded = orjson.dumps(item)
        parts = self._items.get(partition)
        if parts is None:
            self._items[partition] = [encoded]
        else:
            parts.append(encoded)

    def __len__(self) -> int:
        return sum(len(items) for items in self._items.values())

    def chunks(self, origin_partition: int, origin_offset: int) -> Iterator[Chunk]:
        """Every chunk, in partition then item order. Deterministic: the same items give the
        same chunks, which is what lets a stage skip a chunk it has applied."""
        limit = self._max_bytes - _ORIGIN_BYTES
        for partition, items in self._items.items():
            chunk = 0
            parts: list[bytes] = []
            size = 0
            for item in items:
                if parts and size + len(item) + 1 > limit:
                    origin = Origin(origin_partition, origin_offset, chunk)
                    yield Chunk(partition, origin, parts, size)
                    chunk, parts, size = chunk + 1, [], 0
                parts.append(item)
                size += len(item) + 1
            if parts:
                yield Chunk(partition, Origin(origin_partition, origin_offset, chunk), parts, size)

    def messages(self, origin_partition: int, origin_offset: int) -> Iterator[tuple[int, bytes]]:
        """(partition, value) of one stage message per chunk."""
        for chunk in self.chunks(origin_partition, origin_offset):
            yield chunk.partition, encode_message([chunk])


def pack(chunks: list[Chunk], max_message_bytes: int = MAX_MESSAGE_BYTES) -> list[list[Chunk]]:
    """Chunks for one partition, in order, packed whole into as few messages as fit."""
    messages: list[list[Chunk]] = []
    current: list[Chunk] = []
    size = 0
    for chunk in chunks:
        needed = chunk.size + _ORIGIN_BYTES
        if current and size + needed > max_message_bytes:
            messages.append(current)
            current, size = [], 0
        current.append(chunk)
        size += needed
    if current:
        messages.append(current)
    return messages


def encode_message(chunks: list[Chunk]) -> bytes:
    origins = orjson.dumps([[*chunk.origin, len(chunk.items)] for chunk in chunks])
    return b"[" + b",".join([origins, *(item for chunk in chunks for item in chunk.items)]) + b"]"


def decode_message(value: bytes) -> list[tuple[Origin, list[Any]]]:
    """The parts of a stage message: (origin, items) each."""
    data = orjson.loads(value)
    head = data[0]
    if head and not isinstance(head[0], list):  # the one-part format
        return [(Origin(*head), data[1:])]
    parts = []
    start = 1
    for partition, offset, chunk, count in head:
        parts.append((Origin(partition, offset, chunk), data[start : start + count]))
        start += count
    return parts


# -- item codecs ------------------------------------------------------------------------------


def encode_event(event: Event) -> list[Any]:
    snapshot = event.actor
    return [
        event.event_id,
        event.type.value,
        event.actor_id,
        event.target_id,
        event.occurred_at,
        event.post_id,
        event.text,
        None
        if snapshot is None
        else [
            snapshot.created_at,
            snapshot.followers_count,
            snapshot.following_count,
            snapshot.posts_count,
        ],
        event.schema_version,
    ]


def decode_event(item: list[Any]) -> Event:
    snapshot = item[7]
    return trusted_event(
        item[0],
        EventType(item[1]),
        item[2],
        item[3],
        item[4],
        item[5],
        item[6],
        None if snapshot is None else trusted_snapshot(*snapshot),
        item[8],
    )


def encode_target_message(message: TargetMessage) -> list[Any]:
    return [
        message.event_id,
        message.event_hash,
        message.type.value,
        message.actor_id,
        message.target_id,
        message.occurred_at,
        message.asks_for_share,
        message.follower_quality,
        list(message.co_follows),
    ]


def decode_target_message(item: list[Any]) -> TargetMessage:
    return TargetMessage(
        event_id=item[0],
        event_hash=item[1],
        type=EventType(item[2]),
        actor_id=item[3],
        target_id=item[4],
        occurred_at=item[5],
        asks_for_share=item[6],
        follower_quality=item[7],
        # Absent from messages written before lockstep was kept.
        co_follows=tuple(item[8]) if len(item) > 8 else (),
    )


def encode_stranger_request(request: StrangerRequest) -> list[Any]:
    return [
        request.event_id,
        request.event_hash,
        request.requester_id,
        request.stranger_id,
        request.occurred_at,
    ]


def decode_stranger_request(item: list[Any]) -> StrangerRequest:
    return StrangerRequest(
        event_id=item[0],
        event_hash=item[1],
        requester_id=item[2],
        stranger_id=item[3],
        occurred_at=item[4],
    )


def encode_alert(alert: Alert) -> dict[str, Any]:
    """An enforced alert on its way to the quota stage: the payload the alerts topic gets."""
    return alert.model_dump(mode="json")


def decode_alert(item: dict[str, Any]) -> Alert:
    return Alert.model_validate(item)
