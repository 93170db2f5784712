"""Stage 2 waits for stage 1 of its partition: `ActorStageClock`, fed by `Stage1Input`.

Stage 2 judges "does the target follow the actor?" from relations that stage 1 writes when
the target acts. Replay applies events in event-time order; the worker's stage 1 for a
partition can lag its stage 2 (a restarted worker replays its stage-1 backlog while other
partitions' forwards keep arriving), and then a friend's request looks like a stranger's.
So stage 2 waits until stage 1 of its partition has applied events up to the message's event
time, or has applied all there is so far (nothing newer can come from it yet), or a bound has
passed. Once the bound has passed on a partition, stage 2 does not wait there again until
stage 1 of that partition moves (`Wait.STALLED`): a stalled stage 1 costs stage 2 one bound,
not one bound per message. A wait that a rebalance or a stop interrupts ends with the message
left unapplied (`Wait.STOPPED`): stage 1 is paused then, and applying it would judge on what
stage 1 had reached by chance; whoever holds the partition next reads the message again.

"All there is so far" is read from offsets, not inferred from quiet: a stage 1 that has not
fetched yet after a restart or a rebalance is quiet too.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
from collections.abc import Callable


class Wait(enum.Enum):
    NOT_NEEDED = "not_needed"
    WAITED = "waited"
    STOPPED = "stopped"  # interrupted: leave the message unapplied
    STALLED = "stalled"  # the bound passed here before, and stage 1 has not moved since


class Stage1Input:
    """Has stage 1 of a partition handled everything there is for it so far?

    Yes when it has handled every stage-1 message up to the partition's end offset, every
    message this worker's ingest sent it is acknowledged and handled, and ingest has handled
    the events partition of the same number up to its end (producers key events by actor, so
    events partition p feeds stage-1 partition p). Unknown ends are no. Handled is what stage
    1's progress marker says (`applied_upto`): what it applied here, and what was stored before
    this process or this assignment started, or a restarted worker whose stage 1 has nothing
    new would never be caught up.
    """

    def __init__(
        self,
        stage1_end: Callable[[int], int | None],
        ingest_caught_up: Callable[[int], bool],
        applied_upto: Callable[[int], int],
    ) -> None:
        self._stage1_end = stage1_end
        self._ingest_caught_up = ingest_caught_up
        self._applied_upto = applied_upto
        self._sent: dict[int, int] = {}  # partition -> last offset ingest got acknowledged
        self.on_handled: Callable[[], None] = lambda: None  # ingest's backpressure listens

    def sent(self, partition: int, offset: int) -> None:
        if offset > self._sent.get(partition, -1):
            self._sent[partition] = offset

    def handled(self) -> None:
        """Stage 1 handled a message (its marker moved): there may be room for ingest."""
        self.on_handled()

    def handled_upto(self, partition: int) -> int:
        return self._applied_upto(partition)

    def caught_up(self, partition: int) -> bool:
        handled = self.handled_upto(partition)
        if handled < self._sent.get(partition, -1):
            return False
        end = self._stage1_end(partition)
        if end is None or handled + 1 < end:
            return False
        return self._ingest_caught_up(partition)


class ActorStageClock:
    """How far stage 1 has got in event time, per partition, and stage 2's wait on it. A
    rebalance forgets the event times (`forget()`): a partition that comes back may have moved
    on elsewhere meanwhile."""

    def __init__(
        self,
        max_s: float,
        clock: Callable[[], float],
        caught_up: Callable[[int], bool],
        poll_s: float = 0.01,
    ) -> None:
        self.max_s = max_s
        self._clock = clock
        self._caught_up = caught_up
        self._poll_s = poll_s
        self._event_ms: dict[int, int] = {}
        self._moves: dict[int, int] = {}  # partition -> messages stage 1 handled there
        self._stalled_at: dict[int, int] = {}  # partition -> its moves when the bound passed
        self._advanced = asyncio.Event()

    def advance(self, partition: int, newest_event_ms: int) -> None:
        if newest_event_ms > self._event_ms.get(partition, -1):
            self._event_ms[partition] = newest_event_ms
        self._moves[partition] = self._moves.get(partition, 0) + 1
        self._advanced.set()

    def forget(self) -> None:
        self._event_ms.clear()
        self._stalled_at.clear()

    def ready(self, partition: int, event_ms: int, waiting_since: float) -> bool:
        if self._event_ms.get(partition, -1) >= event_ms:
            return True
        return self._clock() - waiting_since >= self.max_s or self._caught_up(partition)

    async def wait(self, partition: int, event_ms: int, stop: Callable[[], bool]) -> Wait:
        if event_ms < 0 or self._event_ms.get(partition, -1) >= event_ms:
            return Wait.NOT_NEEDED
        if self._stalled_at.get(partition) == self._moves.get(partition, 0):
            return Wait.STALLED
        since = self._clock()
        waited = Wait.NOT_NEEDED
        while not self.ready(partition, event_ms, since):
            if stop():
                return Wait.STOPPED
            waited = Wait.WAITED
            self._advanced.clear()
            # Caught-up changes without an advance (the input's end offset is learnt from
            # fetches), so poll as well.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._advanced.wait(), timeout=self._poll_s)
        if (
            self._clock() - since >= self.max_s
            and self._event_ms.get(partition, -1) < event_ms
            and not self._caught_up(partition)
        ):
            self._stalled_at[partition] = self._moves.get(partition, 0)
        return waited
