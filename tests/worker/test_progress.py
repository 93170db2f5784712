"""Rewinds: seeking back when the consumer skips input offsets."""

from __future__ import annotations

import asyncio

from service.worker.progress import ActorStageClock, Rewinds, StageProgress


class Consumer:
    def __init__(self, log_start: int = 0) -> None:
        self.seeks: list[tuple[str, int]] = []
        self.start = log_start
        self.generation = 1
        self.now = 0.0
        self.abandoned: list[tuple[str, int, int]] = []

    async def seek(self, tp: str, offset: int) -> None:
        self.seeks.append((tp, offset))

    async def log_start(self, tp: str) -> int:
        return self.start

    def rewinds(self) -> Rewinds:
        return Rewinds(
            self.seek,
            self.log_start,
            lambda: self.generation,
            lambda: self.now,
            lambda tp, wanted, offset: self.abandoned.append((tp, wanted, offset)),
            retry_s=1.0,
            give_up_s=30.0,
        )


def admitted(rewinds: Rewinds, arrivals: list[tuple[int, int]]) -> list[bool]:
    """(offset, expected) pairs in arrival order on partition "p"."""

    async def run() -> list[bool]:
        return [await rewinds.admit("p", offset, expected) for offset, expected in arrivals]

    return asyncio.run(run())


def test_in_order_offsets_pass_without_seeking() -> None:
    consumer = Consumer()
    assert admitted(consumer.rewinds(), [(0, 0), (1, 1), (2, 2)]) == [True, True, True]
    assert consumer.seeks == []


def test_a_jump_seeks_back_and_ignores_until_the_missing_offset_returns() -> None:
    # applied up to 52; the consumer hands over 63, 64 (53..62 dropped in a rebalance), then
    # after the seek the fetcher returns 53.
    consumer = Consumer()
    arrivals = [(52, 52), (63, 53), (64, 53), (53, 53), (54, 54)]
    assert admitted(consumer.rewinds(), arrivals) == [True, False, False, True, True]
    assert consumer.seeks == [("p", 53)]


def test_a_rewind_undone_by_already_fetched_messages_seeks_again() -> None:
    # t=0    63 arrives (53 expected): seek to 53
    # t=0.5  64 arrives: too soon to seek again
    # t=1.5  65 arrives, still no 53: the seek was lost, seek again
    # t=3.0  nothing arrives at all: the timer's retry seeks again
    # t=3.1  53 arrives
    consumer = Consumer()
    rewinds = consumer.rewinds()
    assert admitted(rewinds, [(63, 53)]) == [False]
    consumer.now = 0.5
    assert admitted(rewinds, [(64, 53)]) == [False]
    assert consumer.seeks == [("p", 53)]
    consumer.now = 1.5
    assert admitted(rewinds, [(65, 53)]) == [False]
    assert consumer.seeks == [("p", 53), ("p", 53)]
    consumer.now = 3.0
    asyncio.run(rewinds.retry_stalled())
    assert consumer.seeks == [("p", 53), ("p", 53), ("p", 53)]
    consumer.now = 3.1
    assert admitted(rewinds, [(53, 53), (54, 54)]) == [True, True]
    asyncio.run(rewinds.retry_stalled())
    assert len(consumer.seeks) == 3


def test_a_rewind_never_answered_is_abandoned_after_the_bound() -> None:
    # t=0   63 arrives (53 expected): seek to 53
    # t=29  70 arrives, still no 53: keep waiting (and seek again)
    # t=30  71 arrives: give up on 53..70, apply 71
    consumer = Consumer()
    rewinds = consumer.rewinds()
    assert admitted(rewinds, [(63, 53)]) == [False]
    consumer.now = 29.0
    assert admitted(rewinds, [(70, 53)]) == [False]
    assert consumer.abandoned == []
    consumer.now = 30.0
    assert admitted(rewinds, [(71, 53), (72, 72)]) == [True, True]
    assert consumer.abandoned == [("p", 53, 71)]


def test_older_offsets_are_admitted_for_the_caller_to_skip() -> None:
    consumer = Consumer()
    assert admitted(consumer.rewinds(), [(10, 40), (41, 41)]) == [True, True]
    assert consumer.seeks == []


def test_unknown_position_admits_anything() -> None:
    consumer = Consumer()
    assert admitted(consumer.rewinds(), [(500, -1)]) == [True]
    assert consumer.seeks == []


def test_offsets_deleted_by_retention_are_not_waited_for() -> None:
    consumer = Consumer(log_start=100)
    assert admitted(consumer.rewinds(), [(100, 7)]) == [True]
    consumer = Consumer(log_start=100)
    assert admitted(consumer.rewinds(), [(120, 7), (100, 7)]) == [False, True]
    assert consumer.seeks == [("p", 100)]


def test_a_rebalance_ends_a_rewind() -> None:
    consumer = Consumer()
    rewinds = consumer.rewinds()
    assert admitted(rewinds, [(63, 53)]) == [False]
    consumer.generation = 2
    # The new assignment resumed at the committed offset 53 itself.
    assert admitted(rewinds, [(53, 53)]) == [True]
    assert admitted(rewinds, [(70, 54)]) == [False]
    assert consumer.seeks == [("p", 53), ("p", 54)]


def test_a_skipped_message_advances_the_marker_but_not_its_origins() -> None:
    table: dict[str, object] = {}
    first = StageProgress(table, "t", 0, 5)
    first.record([2, 9, 0])
    skipped = StageProgress(table, "t", 0, 6)
    assert skipped.already_applied([2, 9, 0])
    skipped.record_skipped()
    after = StageProgress(table, "t", 0, 7)
    assert after.applied_upto == 6
    assert after.already_applied([2, 9, 0])
    assert not after.already_applied([2, 10, 0])


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_stage2_is_ready_once_stage1_reaches_its_event_time() -> None:
    clock = Clock()
    actor = ActorStageClock(idle_s=1.0, max_s=10.0, clock=clock)
    actor.advance(3, 5_000)
    assert actor.ready(3, 5_000, waiting_since=clock.now)
    assert not actor.ready(3, 5_001, waiting_since=clock.now)
    actor.advance(3, 6_000)
    assert actor.ready(3, 5_001, waiting_since=clock.now)
    assert not actor.ready(4, 5_001, waiting_since=clock.now)  # another partition's stage 1


def test_stage2_stops_waiting_when_stage1_is_idle_or_after_the_bound() -> None:
    # time  100.0  stage 1 of partition 3 applies events up to 5 s
    #       100.5  stage 2 wants 9 s: stage 1 active 0.5 s ago, wait
    #       101.0  stage 1 idle for 1 s: nothing newer will come, go
    clock = Clock()
    actor = ActorStageClock(idle_s=1.0, max_s=10.0, clock=clock)
    actor.advance(3, 5_000)
    clock.now = 100.5
    assert not actor.ready(3, 9_000, waiting_since=100.5)
    clock.now = 101.0
    assert actor.ready(3, 9_000, waiting_since=100.5)
    # A busy stage 1 that never reaches the time: the bound ends the wait.
    for step in range(1, 12):
        clock.now = 101.0 + step
        actor.advance(3, 5_000 + step)
        assert actor.ready(3, 9_000_000, waiting_since=101.0) == (step >= 10)


def test_wait_returns_when_stage1_advances() -> None:
    async def run() -> bool:
        actor = ActorStageClock(idle_s=5.0, max_s=60.0, clock=asyncio.get_running_loop().time)
        actor.advance(0, 1_000)

        async def stage1() -> None:
            await asyncio.sleep(0.05)
            actor.advance(0, 2_000)

        task = asyncio.create_task(stage1())
        waited = await asyncio.wait_for(actor.wait(0, 2_000, lambda: False), timeout=2)
        await task
        return waited

    assert asyncio.run(run()) is True
