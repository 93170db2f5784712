"""The ingest loop against an in-memory consumer: offsets are committed only after what a batch
sent is acknowledged, partitions pause while stage 1 is behind, and a revoke commits."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from aiokafka import TopicPartition
from prometheus_client import CollectorRegistry

from service.core.decoding import EventDecoder
from service.runtime.ingest import IngestLoop
from service.runtime.metrics import Metrics
from service.runtime.sinks import Delivery
from service.runtime.stages import IngestStage
from service.settings import Settings
from tests.runtime.twin import LATER_MS, MemoryRecord

TP0 = TopicPartition("events", 0)


@dataclass
class MemoryConsumer:
    """One assigned partition of records; getmany hands out up to `max_records` unpaused."""

    records: list[MemoryRecord]
    position: int = 0
    commits: list[dict[TopicPartition, int]] = field(default_factory=list)
    paused_partitions: set[TopicPartition] = field(default_factory=set)
    polls: int = 0

    async def getmany(
        self, *partitions: TopicPartition, timeout_ms: int = 0, max_records: int | None = None
    ) -> dict[TopicPartition, list[Any]]:
        self.polls += 1
        await asyncio.sleep(0)
        if TP0 in self.paused_partitions or self.position >= len(self.records):
            return {}
        batch = self.records[self.position : self.position + (max_records or 10**9)]
        self.position += len(batch)
        return {TP0: batch}

    async def commit(self, offsets: dict[TopicPartition, int] | None = None) -> None:
        self.commits.append(dict(offsets or {}))

    async def committed(self, partition: TopicPartition) -> int | None:
        offsets = [c[partition] for c in self.commits if partition in c]
        return offsets[-1] if offsets else self.group_offset

    group_offset: int | None = None  # committed before this consumer started

    assigned: set[TopicPartition] = field(default_factory=lambda: {TP0})

    def assignment(self) -> set[TopicPartition]:
        return set(self.assigned)

    def assign(self, partitions: list[TopicPartition]) -> None:
        self.assigned = set(partitions)

    def pause(self, *partitions: TopicPartition) -> None:
        self.paused_partitions.update(partitions)

    def resume(self, *partitions: TopicPartition) -> None:
        self.paused_partitions.difference_update(partitions)

    def paused(self) -> set[TopicPartition]:
        return set(self.paused_partitions)

    def highwater(self, partition: TopicPartition) -> int | None:
        return len(self.records)


class HeldSink:
    """A sink whose acknowledgements wait until released (a slow broker)."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.pending: list[asyncio.Future[Delivery]] = []
        self.acknowledge_at_once = False

    async def send(
        self, value: bytes, key: bytes | None = None, partition: int | None = None
    ) -> Awaitable[Delivery]:
        self.sent.append(value)
        future: asyncio.Future[Delivery] = asyncio.get_running_loop().create_future()
        if self.acknowledge_at_once:
            future.set_result(Delivery(0, 0))
        self.pending.append(future)
        return _wait(future, Delivery(partition or 0, len(self.sent) - 1))

    def release(self, count: int | None = None) -> None:
        for future in self.pending[:count]:
            if not future.done():
                future.set_result(Delivery(0, 0))


async def _wait(future: asyncio.Future[Delivery], delivery: Delivery) -> Delivery:
    await future
    return delivery


def events(count: int) -> list[MemoryRecord]:
    return [
        MemoryRecord(
            "events",
            0,
            offset,
            None,
            orjson.dumps(
                {
                    "event_id": f"e{offset}",
                    "type": "follow",
                    "actor_id": f"a{offset % 7}",
                    "target_id": "b",
                    "occurred_at": 1_767_600_000_000 + offset,
                }
            ),
        )
        for offset in range(count)
    ]


def ingest_stage(sink: HeldSink) -> IngestStage:
    settings = Settings()
    return IngestStage(
        EventDecoder(settings.input, lambda: LATER_MS),
        1,
        sink,
        sink,
        Metrics(CollectorRegistry()),
        lambda: LATER_MS,
        settings.input.dead_letter_keep_bytes,
    )


async def until(condition: Any, timeout: float = 2.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition never held"
        await asyncio.sleep(0.001)


def test_offsets_are_committed_only_after_the_batch_is_acknowledged() -> None:
    async def run() -> None:
        sink = HeldSink()
        consumer = MemoryConsumer(events(10))
        loop = IngestLoop(
            consumer, ingest_stage(sink), max_records=4, max_batches_ahead=10,
            stage1_done=lambda d: True, fetch_timeout_ms=1,
        )  # fmt: skip
        task = asyncio.create_task(loop.run())
        await until(lambda: consumer.position == 10)
        await asyncio.sleep(0.01)
        assert consumer.commits == []  # three batches handed over, none acknowledged
        sink.release(1)  # the first batch's stage-1 message
        await until(lambda: consumer.commits)
        assert consumer.commits == [{TP0: 4}]
        sink.release()
        await until(lambda: consumer.commits[-1] == {TP0: 10})
        loop.stop()
        await task

    asyncio.run(run())


def test_a_failed_hand_over_stops_the_loop_and_commits_nothing_of_it() -> None:
    async def run() -> None:
        sink = HeldSink()
        consumer = MemoryConsumer(events(8))
        loop = IngestLoop(
            consumer, ingest_stage(sink), max_records=4, max_batches_ahead=10,
            stage1_done=lambda d: True, fetch_timeout_ms=1,
        )  # fmt: skip
        task = asyncio.create_task(loop.run())
        await until(lambda: len(sink.pending) == 2)
        sink.pending[0].set_result(Delivery(0, 0))
        sink.pending[1].set_exception(RuntimeError("broker refused"))
        with pytest.raises(RuntimeError, match="broker refused"):
            await asyncio.wait_for(task, timeout=2)
        assert consumer.commits in ([], [{TP0: 4}])  # never the failed batch's offsets

    asyncio.run(run())


def test_partitions_pause_while_stage1_is_behind_and_polling_goes_on() -> None:
    async def run() -> None:
        sink = HeldSink()
        consumer = MemoryConsumer(events(40))
        handled_upto = [-1]
        loop = IngestLoop(
            consumer, ingest_stage(sink), max_records=4, max_batches_ahead=2,
            stage1_done=lambda d: d.offset <= handled_upto[0], fetch_timeout_ms=1,
        )  # fmt: skip
        sink.acknowledge_at_once = True  # acknowledged, but stage 1 does not move
        task = asyncio.create_task(loop.run())
        await until(lambda: consumer.paused())
        taken = consumer.position
        polls = consumer.polls
        await asyncio.sleep(1.2)
        # Paused: nothing more taken, but the member keeps polling (stays in the group).
        assert consumer.position == taken <= 4 * 2
        assert consumer.polls > polls
        handled_upto[0] = 10**9  # stage 1 catches up, and says so
        loop.stage1_progressed()
        await until(lambda: consumer.position == 40 and not consumer.paused())
        loop.stop()
        await task

    asyncio.run(run())


def test_a_long_hold_is_reported_with_what_it_waits_for(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr("service.runtime.ingest.HELD_REPORT_SECONDS", 0.5)

    async def run() -> None:
        sink = HeldSink()
        consumer = MemoryConsumer(events(40))
        loop = IngestLoop(
            consumer, ingest_stage(sink), max_records=4, max_batches_ahead=2,
            stage1_done=lambda d: False, fetch_timeout_ms=1,
        )  # fmt: skip
        sink.acknowledge_at_once = True  # acknowledged; stage 1 never handles them
        task = asyncio.create_task(loop.run())
        await until(lambda: consumer.paused())
        await until(lambda: "held back" in caplog.text, timeout=3.0)
        loop.stop()
        await task

    with caplog.at_level("WARNING", logger="service.runtime.ingest"):
        asyncio.run(run())
    # The first batch's stage-1 message went to partition 0, the first message sent.
    assert "0 batches not yet acknowledged, 2 acknowledged" in caplog.text
    assert "waits for stage-1 [0]@0" in caplog.text


def test_a_reassignment_waits_for_what_was_handed_over_and_commits_it_first() -> None:
    async def run() -> None:
        sink = HeldSink()
        consumer = MemoryConsumer(events(6))
        loop = IngestLoop(
            consumer, ingest_stage(sink), max_records=10, max_batches_ahead=10,
            stage1_done=lambda d: True, fetch_timeout_ms=1,
        )  # fmt: skip
        task = asyncio.create_task(loop.run())
        await until(lambda: consumer.position == 6)
        revoke = asyncio.create_task(loop.reassign([]))  # the stages gave partition 0 away
        await asyncio.sleep(0.01)
        assert not revoke.done()  # waiting for the acknowledgement
        assert consumer.assignment() == {TP0}
        sink.release()
        await asyncio.wait_for(revoke, timeout=2)
        assert consumer.commits[-1] == {TP0: 6}
        assert consumer.assignment() == set() and loop.rebalances == 1
        loop.stop()
        await task

    asyncio.run(run())


def test_caught_up_only_once_told_its_partitions_and_their_backlog_is_handed_over() -> None:
    # Stage 2's wait ends on this: a worker that has just started, or just been given a
    # partition, has a backlog to hand over first (a friend's request then looked like a
    # stranger's after a SIGKILL).
    async def run() -> None:
        sink = HeldSink()
        sink.acknowledge_at_once = True
        consumer = MemoryConsumer(events(6))
        consumer.assigned = set()
        loop = IngestLoop(
            consumer, ingest_stage(sink), max_records=10, max_batches_ahead=10,
            stage1_done=lambda d: True, fetch_timeout_ms=1,
        )  # fmt: skip
        assert not loop.caught_up(0)  # not told which partitions to read yet
        assert not loop.caught_up(1)
        revoke = asyncio.create_task(loop.reassign([TP0]))
        assert not loop.caught_up(0)  # told, not yet taken
        await revoke
        assert loop.caught_up(1)  # no events partition feeds stage-1 partition 1
        assert not loop.caught_up(0)  # taken, its backlog not handed over
        task = asyncio.create_task(loop.run())
        await until(lambda: loop.caught_up(0))
        assert consumer.position == 6
        loop.stop()
        await task

    asyncio.run(run())


def test_a_partition_the_group_committed_to_its_end_is_caught_up_without_a_fetch() -> None:
    # A restarted worker given a partition another worker has ingested to its end: nothing to
    # hand over, so stage 2 must not wait its bound for every message.
    async def run() -> None:
        consumer = MemoryConsumer(events(6))
        consumer.assigned = set()
        consumer.group_offset = 6
        loop = IngestLoop(
            consumer, ingest_stage(HeldSink()), max_records=10, max_batches_ahead=10,
            stage1_done=lambda d: True, fetch_timeout_ms=1,
        )  # fmt: skip
        await loop.reassign([TP0])
        assert loop.caught_up(0)
        consumer.records.extend(events(7)[6:])  # a new event arrives
        assert not loop.caught_up(0)

    asyncio.run(run())
