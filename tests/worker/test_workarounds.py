"""Reading back skipped input ranges, on the real broker; messages a stage leaves unapplied."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from faust.types import TP

from service.worker.workarounds import (
    MissedMessages,
    ReleasedMessages,
    TailGaps,
    UnfetchedPartitions,
)
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


class FakeMessage:
    def __init__(self, partition: int, offset: int) -> None:
        self.partition, self.offset = partition, offset


class FakeEvent:
    def __init__(self, partition: int, offset: int) -> None:
        self.message = FakeMessage(partition, offset)


class FakeConsumer:
    def __init__(self) -> None:
        self.unacked: set[FakeMessage] = set()


def test_a_released_message_leaves_the_pending_set_and_is_acked_with_a_later_one() -> None:
    consumer = FakeConsumer()
    released = ReleasedMessages(consumer)
    first, other = FakeEvent(1, 7), FakeEvent(2, 3)
    consumer.unacked.update({first.message, other.message})
    released.add(first)
    released.add(other)
    assert consumer.unacked == set()  # Faust's rebalance no longer waits for them
    assert released.before(1, 7) == []  # Faust delivered offset 7 again: its copy is acked
    assert released.before(1, 9) == [first]  # a later one stored: 7 was read back before it
    assert released.before(1, 10) == []
    assert released.before(2, 4) == [other]


def test_a_partition_committed_past_what_its_stage_applied_is_woken_once() -> None:
    stage1, stage2 = TP("stage1", 0), TP("stage2", 3)
    needs = {stage1: 10, stage2: 4}
    gaps = TailGaps(grace_seconds=lambda tp: 15)
    # Faust acked (and committed) stage1[0] up to 12, but the stage has applied up to 9 only.
    assert gaps.to_wake({stage1: 12, stage2: 4}, needs.get) == [stage1]
    assert gaps.to_wake({stage1: 12, stage2: 4}, needs.get) == []  # woken already
    needs[stage1] = 12  # read back
    assert gaps.to_wake({stage1: 12}, needs.get) == []
    assert gaps.to_wake({stage1: 15}, needs.get) == [stage1]  # a new gap
    assert gaps.to_wake({TP("stage3", 0): 7}, needs.get) == []  # not held here


def test_a_partition_fetched_past_what_its_stage_needs_is_woken_after_the_grace() -> None:
    # Faust's consumer fetched stage1[0]@10 (its position is 11) but never handed it to the
    # stage nor committed it; nothing after it will come. A message fetched and still in the
    # stream's buffer looks the same until the stage gets to it, hence the grace.
    stage1 = TP("stage1", 0)
    needs = {stage1: 10}
    gaps = TailGaps(grace_seconds=lambda tp: 15)

    def wake(position: int, now: float) -> list[TP]:
        return gaps.to_wake({}, needs.get, {stage1: position}, now)

    # second 0: fetched up to 10; 14: still; 15: the grace has passed; 20: woken already
    assert wake(11, now=0) == []
    assert wake(11, now=14) == []
    assert wake(11, now=15) == [stage1]
    assert wake(11, now=20) == []
    # the stage read it back and the wake-up (11): it needs 12, the consumer fetches 12 next
    needs[stage1] = 12
    assert wake(12, now=21) == []
    assert wake(12, now=99) == []  # nothing fetched past: however long
    # a message at 12 is fetched and handed over within the grace: not woken
    assert wake(13, now=100) == []
    needs[stage1] = 13
    assert wake(13, now=130) == []
    # the stage moves while the position stays ahead: each needed offset has its own grace
    assert wake(20, now=131) == []
    needs[stage1] = 15
    assert wake(20, now=145) == []
    assert wake(20, now=160) == [stage1]
    # a partition the stage does not hold is never named
    assert gaps.to_wake({}, needs.get, {TP("stage3", 0): 9}, now=999) == []


def test_a_held_partition_left_out_of_fetching_for_the_grace_is_named_once() -> None:
    a, b = TP("stage2", 0), TP("stage2", 1)
    unfetched = UnfetchedPartitions(grace_seconds=60)
    # second 0: b left out; 30: back in (a full buffer drained); 40: out again; 99: still out
    assert unfetched.to_refetch({a, b}, {a}, now=0) == []
    assert unfetched.to_refetch({a, b}, {a, b}, now=30) == []
    assert unfetched.to_refetch({a, b}, {a}, now=40) == []
    assert unfetched.to_refetch({a, b}, {a}, now=99) == []
    assert unfetched.to_refetch({a, b}, {a}, now=100) == [b]
    assert unfetched.to_refetch({a, b}, {a}, now=101) == []  # its minute starts again
    # a partition no longer held is forgotten
    assert unfetched.to_refetch({a}, {a}, now=200) == []
    unfetched.reset()
    assert unfetched.to_refetch({a, b}, {a}, now=300) == []
