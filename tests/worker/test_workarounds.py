"""Reading back skipped input ranges, on the real broker."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from service.worker.workarounds import MissedMessages
from tests.worker.harness import create_topics, produce

pytestmark = pytest.mark.kafka


def read(bootstrap: str, topic: str, start: int, end: int, owned_checks: int = 1000) -> list[bytes]:
    """`owned_checks`: how many times the reader may ask whether it still owns the partition
    before the answer turns to no (a rebalance)."""
    checks = iter(range(owned_checks))

    def owned() -> bool:
        return next(checks, None) is not None

    async def run() -> list[bytes]:
        reader = MissedMessages({"bootstrap_servers": bootstrap}, fetch_timeout_ms=200)
        values: list[bytes] = []
        try:
            async for records in reader.read(topic, 0, start, end, owned):
                values.extend(record.value for record in records)
        finally:
            await reader.close()
        return values

    return asyncio.run(run())


@pytest.fixture(scope="module")
def topic(kafka: str) -> str:
    name = f"missed-{uuid.uuid4().hex[:8]}"
    create_topics(kafka, [name], partitions=1)
    produce(kafka, name, [f"m{n}".encode() for n in range(30)])
    return name


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        (5, 12, [f"m{n}".encode() for n in range(5, 12)]),
        (0, 1, [b"m0"]),
        (29, 30, [b"m29"]),
        (7, 7, []),
    ],
)
def test_reads_exactly_the_missing_range(
    kafka: str, topic: str, start: int, end: int, expected: list[bytes]
) -> None:
    assert read(kafka, topic, start, end) == expected


def test_reading_stops_once_the_partition_is_no_longer_owned(kafka: str, topic: str) -> None:
    assert read(kafka, topic, 0, 30, owned_checks=0) == []
    # Owned for the first fetch only: what it got is a prefix of the range, in order.
    prefix = read(kafka, topic, 0, 30, owned_checks=2)
    assert prefix == [f"m{n}".encode() for n in range(len(prefix))]
