"""Stage 2 waiting on stage 1's event time, and progress markers between stages."""

from __future__ import annotations

import asyncio

from service.runtime.framing import Origin
from service.runtime.progress import NO_MARKER
from service.runtime.stage_wait import ActorStageClock, Stage1Input, Wait


def test_a_skipped_message_advances_the_marker_but_not_its_origins() -> None:
    first = NO_MARKER.after(5, [Origin(2, 9, 0)])
    assert first.already_applied(6, Origin(2, 9, 0))
    after = first.after(6)  # offset 6 skipped: its origin was applied already
    assert after.applied_upto == 6
    assert after.already_applied(7, Origin(2, 9, 0))
    assert not after.already_applied(7, Origin(2, 10, 0))
    assert not after.already_applied(7, Origin(-1, -1, 0))  # from ingest: no origin to match
    assert after.already_applied(6, Origin(-1, -1, 0))


def test_a_packed_message_moves_the_marker_of_every_origin_it_holds() -> None:
    marker = NO_MARKER.after(3, [Origin(1, 10, 0), Origin(2, 4, 1), Origin(1, 11, 0)])
    assert marker.origins == {"1": [11, 0], "2": [4, 1]}
    assert marker.already_applied(4, Origin(1, 10, 0))
    assert not marker.already_applied(4, Origin(2, 4, 2))
    # An older part never moves an origin back.
    assert marker.after(4, [Origin(2, 3, 0)]).origins["2"] == [4, 1]


def test_stage1_is_caught_up_once_it_handled_everything_sent_and_fetched() -> None:
    ends = {3: 10}
    ingest_done = {3: False}
    markers = {3: 8}  # what stage 1's progress marker says it applied
    stage1 = Stage1Input(lambda p: ends.get(p), lambda p: ingest_done[p], markers.__getitem__)
    stage1.sent(3, 9)
    assert not stage1.caught_up(3)  # offset 9 sent here, not yet handled
    markers[3] = 9
    assert not stage1.caught_up(3)  # ingest still has events of partition 3 to hand over
    ingest_done[3] = True
    assert stage1.caught_up(3)
    ends[3] = 12  # another worker's ingest sent more
    assert not stage1.caught_up(3)
    assert not Stage1Input(lambda p: None, lambda p: True, lambda p: 5).caught_up(0)  # end unknown


def test_what_stage1_stored_before_a_restart_counts_as_handled() -> None:
    # A restarted worker whose stage-1 partition has nothing new: its marker says offset 9
    # was applied, and the partition ends at 10.
    markers = {3: 9}
    stage1 = Stage1Input(lambda p: 10, lambda p: True, lambda p: markers.get(p, -1))
    assert stage1.caught_up(3)
    assert stage1.handled_upto(3) == 9
    assert not stage1.caught_up(4)  # nothing applied there: offsets 0-9 still to handle


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Input:
    """Whether stage 1's input, per partition, is consumed to its end."""

    def __init__(self) -> None:
        self.consumed: set[int] = set()

    def __call__(self, partition: int) -> bool:
        return partition in self.consumed


def test_stage2_is_ready_once_stage1_reaches_its_event_time() -> None:
    clock = Clock()
    actor = ActorStageClock(max_s=10.0, clock=clock, caught_up=Input())
    actor.advance(3, 5_000)
    assert actor.ready(3, 5_000, waiting_since=clock.now)
    assert not actor.ready(3, 5_001, waiting_since=clock.now)
    actor.advance(3, 6_000)
    assert actor.ready(3, 5_001, waiting_since=clock.now)
    assert not actor.ready(4, 5_001, waiting_since=clock.now)  # another partition's stage 1


def test_stage2_stops_waiting_once_stage1_has_consumed_its_input_or_after_the_bound() -> None:
    # time  100.0  stage 1 of partition 3 applies events up to 5 s; stage 2 wants 9 s
    #       105.0  stage 1 quiet for 5 s but its input not consumed (not fetched yet): wait
    #       105.5  stage 1 has consumed its input to the end: nothing newer to wait for, go
    clock = Clock()
    stage1_input = Input()
    actor = ActorStageClock(max_s=10.0, clock=clock, caught_up=stage1_input)
    actor.advance(3, 5_000)
    clock.now = 105.0
    assert not actor.ready(3, 9_000, waiting_since=100.0)
    clock.now = 105.5
    stage1_input.consumed.add(3)
    assert actor.ready(3, 9_000, waiting_since=100.0)
    # A busy stage 1 that never reaches the time: the bound ends the wait.
    for step in range(1, 12):
        clock.now = 101.0 + step
        actor.advance(4, 5_000 + step)
        assert actor.ready(4, 9_000_000, waiting_since=101.0) == (step >= 10)


def test_a_rebalance_forgets_how_far_stage1_had_got() -> None:
    # A partition that moved away and back may have been processed elsewhere meanwhile.
    clock = Clock()
    actor = ActorStageClock(max_s=10.0, clock=clock, caught_up=Input())
    actor.advance(3, 5_000)
    actor.forget()
    assert not actor.ready(3, 5_000, waiting_since=clock.now)


def test_wait_returns_when_stage1_advances() -> None:
    async def run() -> Wait:
        actor = ActorStageClock(
            max_s=60.0, clock=asyncio.get_running_loop().time, caught_up=Input()
        )
        actor.advance(0, 1_000)

        async def stage1() -> None:
            await asyncio.sleep(0.05)
            actor.advance(0, 2_000)

        task = asyncio.create_task(stage1())
        waited = await asyncio.wait_for(actor.wait(0, 2_000, lambda: False), timeout=2)
        await task
        return waited

    assert asyncio.run(run()) is Wait.WAITED


def test_a_rebalance_interrupts_the_wait_and_the_message_is_left_unapplied() -> None:
    async def run() -> Wait:
        actor = ActorStageClock(
            max_s=60.0, clock=asyncio.get_running_loop().time, caught_up=Input()
        )
        actor.advance(0, 1_000)
        rebalancing = False

        async def rebalance() -> None:
            nonlocal rebalancing
            await asyncio.sleep(0.05)
            rebalancing = True

        task = asyncio.create_task(rebalance())
        outcome = await asyncio.wait_for(actor.wait(0, 2_000, lambda: rebalancing), timeout=2)
        await task
        return outcome

    assert asyncio.run(run()) is Wait.STOPPED


def test_no_wait_when_stage1_is_already_there_even_while_stopping() -> None:
    async def run() -> Wait:
        actor = ActorStageClock(max_s=60.0, clock=lambda: 0.0, caught_up=Input())
        actor.advance(0, 2_000)
        return await actor.wait(0, 2_000, lambda: True)

    assert asyncio.run(run()) is Wait.NOT_NEEDED


def test_wait_returns_when_stage1_input_is_consumed_without_advancing() -> None:
    async def run() -> Wait:
        stage1_input = Input()
        actor = ActorStageClock(
            max_s=60.0, clock=asyncio.get_running_loop().time, caught_up=stage1_input, poll_s=0.01
        )

        async def stage1() -> None:
            await asyncio.sleep(0.05)
            stage1_input.consumed.add(0)

        task = asyncio.create_task(stage1())
        waited = await asyncio.wait_for(actor.wait(0, 2_000, lambda: False), timeout=2)
        await task
        return waited

    assert asyncio.run(run()) is Wait.WAITED


def test_after_the_bound_stage2_does_not_wait_again_until_stage1_moves() -> None:
    # time  100  stage 2 waits on partition 3 for 9 s; stage 1 there stuck at 5 s
    #       110  the bound: go (and remember that stage 1 of partition 3 stalled)
    #       111  the next message of partition 3: no wait (STALLED); partition 4 still waits
    #       112  stage 1 of partition 3 handles a message: waits resume there
    async def run() -> list[Wait]:
        clock = Clock()
        actor = ActorStageClock(max_s=10.0, clock=clock, caught_up=Input(), poll_s=0.001)
        actor.advance(3, 5_000)
        outcomes = []

        async def time_passes() -> None:
            while True:
                await asyncio.sleep(0.001)
                clock.now += 0.5

        ticking = asyncio.create_task(time_passes())
        outcomes.append(await actor.wait(3, 9_000, lambda: False))  # the bound
        outcomes.append(await actor.wait(3, 9_500, lambda: False))
        outcomes.append(await actor.wait(4, 9_500, lambda: False))  # another partition
        actor.advance(3, 6_000)  # stage 1 of partition 3 moves
        outcomes.append(await actor.wait(3, 9_500, lambda: False))
        ticking.cancel()
        return outcomes

    assert asyncio.run(run()) == [Wait.WAITED, Wait.STALLED, Wait.WAITED, Wait.WAITED]
