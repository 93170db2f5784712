"""Synthetic traffic to a topic, keyed by actor as the contract asks of producers."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from service.runtime.kafka_clients import client_options
from service.settings import KafkaSettings


async def produce_events(kafka: KafkaSettings, topic: str, events: Iterable[Any]) -> int:
    """Send events (JSON-able objects) to `topic`, keyed by actor as the contract asks of
    producers; returns how many."""
    producer = AIOKafkaProducer(**client_options(kafka), linger_ms=20, acks="all")
    await producer.start()
    sent = 0
    try:
        for event in events:
            await producer.send(
                topic, orjson.dumps(event), key=str(event.get("actor_id", "")).encode()
            )
            sent += 1
        await producer.flush()
    finally:
        await producer.stop()
    return sent
