"""LocalKafka starts a real broker: a message goes through it, and stop() leaves nothing open."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from service.devtools.local_kafka import BOOTSTRAP_ENV, LocalKafka, kafka_bootstrap, port_open


async def _round_trip(bootstrap: str, topic: str, value: bytes) -> bytes:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(topic, value, key=b"k")
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"test-{uuid.uuid4().hex}",
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        message = await asyncio.wait_for(consumer.getone(), timeout=30)
    finally:
        await consumer.stop()
    value_out = message.value
    assert isinstance(value_out, bytes)
    return value_out


@pytest.mark.kafka
def test_local_kafka_is_a_real_broker_and_stops_cleanly() -> None:
    kafka = LocalKafka()
    with kafka:
        host, port = kafka.bootstrap_servers.split(":")
        assert host == "127.0.0.1"
        workdir = kafka.workdir
        assert workdir is not None and workdir.is_dir()
        value = f"hello {uuid.uuid4()}".encode()
        assert (
            asyncio.run(_round_trip(kafka.bootstrap_servers, "local-kafka-smoke", value)) == value
        )
    assert not kafka.running
    assert not port_open("127.0.0.1", int(port))
    assert not port_open("127.0.0.1", kafka.controller_port)
    assert not workdir.exists()
    kafka.stop()  # idempotent


def test_kafka_bootstrap_uses_an_existing_cluster_without_starting_one() -> None:
    with kafka_bootstrap({BOOTSTRAP_ENV: "broker-1:9092,broker-2:9092"}) as bootstrap:
        assert bootstrap == "broker-1:9092,broker-2:9092"
