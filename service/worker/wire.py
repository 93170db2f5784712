"""How events travel between the worker's stages: batches of compact lists, one Kafka message
per (stage, partition) batch. Faust costs ~150 us per message, so a message carries many events.

The values are trusted (they were validated at ingest), so decoding skips validation.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from aiokafka.partitioner import murmur2

from service.core.context import StrangerRequest, TargetMessage
from service.core.models import ActorSnapshot, Event, EventType

# A stage message stays well below Kafka's default 1 MiB message limit.
MAX_BATCH_BYTES = 512 * 1024


@lru_cache(maxsize=1 << 20)
def partition_for(key: str, partitions: int) -> int:
    """The partition Kafka's default partitioner picks for this key (murmur2, as in Java)."""
    return int(murmur2(key.encode()) & 0x7FFFFFFF) % partitions


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
    return Event.model_construct(
        event_id=item[0],
        type=EventType(item[1]),
        actor_id=item[2],
        target_id=item[3],
        occurred_at=item[4],
        post_id=item[5],
        text=item[6],
        actor=None
        if snapshot is None
        else ActorSnapshot.model_construct(
            created_at=snapshot[0],
            followers_count=snapshot[1],
            following_count=snapshot[2],
            posts_count=snapshot[3],
        ),
        schema_version=item[8],
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
