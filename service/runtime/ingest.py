"""Ingest: the events topics through a plain consumer group, into stage-1 messages.

A framework that dispatches one consumed message at a time costs ~200 µs per event; a plain
aiokafka fetch loop ~5 µs. Ingest therefore reads in `getmany` batches, with its offsets in a
consumer group of its own (`<app_id>-ingest`, no auto-commit), and `IngestLoop.run` goes:

1. **Fetch** what is there, up to `max_records`, and send it on at once. The consumer's
   `fetch_min_bytes` and `fetch_max_wait_ms` (the worker's settings) let the broker hold a
   fetch briefly at a live pace; a backlog answers it at once.
2. **Hand over** the batch to `IngestStage`: stage-1 messages and dead letters go to the
   producer, in order.
3. **Commit after acknowledgement.** A batch's offsets are committed, in batch order, only
   once all its messages are acknowledged. A crash then never loses input: what was not
   acknowledged is read again, and stage 1 absorbs what was (event ids per account).
4. **Backpressure.** While `max_batches_ahead` batches are not yet handled by stage 1 (or,
   for stage-1 partitions another worker owns, acknowledged), every assigned partition is
   paused until stage 1 makes room; the loop keeps polling meanwhile.
   Events wait in Kafka meanwhile, so the next fetch is a bigger batch: batches grow with the
   load, and each costs stage 1 the same per-message overhead whatever its size.
5. **Reassignment and stop**: wait for what was handed over, then commit it.

Which partitions ingest reads is not the group's choice but the stages': the events
partitions whose number is that of a stage-1 partition this worker holds (modulo the stage
partition count), reassigned whenever the stages' assignment changes (`reassign`). Producers
key events by actor, so events partition p feeds stage-1 partition p, and stage 2's wait for
stage 1 (`runtime.stage_wait`) can tell from this worker alone whether stage 1 of a partition
has everything there is so far.

Kafka's consumer group is the position: no marker of ours. A transactional producer with
`send_offsets_to_transaction` would make hand-over and commit atomic, but stage 1 absorbs the
duplicates a crash between them can cause anyway, and reading stage messages only once
committed would need Faust's consumer in read-committed mode, which it ties to its
exactly-once mode (open fencing bugs).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiokafka import TopicPartition

from service.runtime.sinks import Delivery
from service.runtime.stages import IngestStage

log = logging.getLogger(__name__)

HELD_REPORT_SECONDS = 30.0


class IngestConsumer(Protocol):
    """What ingest uses of an `aiokafka.AIOKafkaConsumer`."""

    async def getmany(
        self, *partitions: TopicPartition, timeout_ms: int = 0, max_records: int | None = None
    ) -> dict[TopicPartition, list[Any]]: ...

    async def commit(self, offsets: dict[TopicPartition, int] | None = None) -> None: ...

    async def committed(self, partition: TopicPartition) -> int | None: ...

    def assignment(self) -> set[TopicPartition]: ...

    def assign(self, partitions: list[TopicPartition]) -> None: ...

    def pause(self, *partitions: TopicPartition) -> None: ...

    def resume(self, *partitions: TopicPartition) -> None: ...

    def paused(self) -> set[TopicPartition]: ...

    def highwater(self, partition: TopicPartition) -> int | None: ...


@dataclass
class _Batch:
    next_offsets: dict[TopicPartition, int]  # per input partition: the offset to commit
    acknowledged: asyncio.Future[list[Delivery]]
    deliveries: list[Delivery] = field(default_factory=list)


class IngestLoop:
    def __init__(
        self,
        consumer: IngestConsumer,
        stage: IngestStage,
        *,
        max_records: int,
        max_batches_ahead: int,
        stage1_done: Callable[[Delivery], bool],
        on_acknowledged: Callable[[list[Delivery]], None] = lambda deliveries: None,
        fetch_timeout_ms: int = 100,
    ) -> None:
        self._consumer = consumer
        self._stage = stage
        self._max_records = max_records
        self._max_ahead = max_batches_ahead
        self._stage1_done = stage1_done
        self._on_acknowledged = on_acknowledged
        self._fetch_timeout_ms = fetch_timeout_ms
        self._unacknowledged: deque[_Batch] = deque()  # handed over, not yet committed
        self._ahead: deque[_Batch] = deque()  # acknowledged, not yet handled by stage 1
        self._delivered: dict[TopicPartition, int] = {}  # last offset acknowledged downstream
        self._committed: dict[TopicPartition, int] = {}
        self._wanted: frozenset[TopicPartition] | None = None  # None: not told yet
        self._handing_over = asyncio.Lock()
        self._room = asyncio.Event()
        self._stopping = False
        self.batches = 0
        self.rebalances = 0
        self._held_since: float | None = None
        self._held_reported = 0.0

    async def run(self) -> None:
        """Until `stop()`; raises if a hand-over fails (nothing of it is committed)."""
        consumer = self._consumer
        while not self._stopping:
            if self._batches_ahead() >= self._max_ahead:
                await self._hold_back()
                continue
            self._held_since = None
            paused = consumer.paused()
            if paused:
                consumer.resume(*paused)
            fetched = await consumer.getmany(
                timeout_ms=self._fetch_timeout_ms, max_records=self._max_records
            )
            if fetched and not self._stopping:
                async with self._handing_over:
                    await self._hand_over(fetched)
            await self._commit_acknowledged(wait=False)

    def stage1_progressed(self) -> None:
        """Stage 1 handled a message (or a batch was acknowledged): there may be room now."""
        self._room.set()

    def _batches_ahead(self) -> int:
        """Batches handed over and not yet handled by stage 1 (or, for stage-1 partitions
        another worker holds, acknowledged)."""
        ahead = self._ahead
        while ahead and all(self._stage1_done(d) for d in ahead[0].deliveries):
            ahead.popleft()
        return len(ahead) + len(self._unacknowledged)

    async def _hold_back(self) -> None:
        """Pause every partition until stage 1 makes room (or a second has passed), then poll
        once: only partitions assigned since are fetched, and handed over."""
        consumer = self._consumer
        unpaused = consumer.assignment() - consumer.paused()
        if unpaused:
            consumer.pause(*unpaused)
        self._report_holding()
        self._room.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._room.wait(), timeout=1.0)
        fetched = await consumer.getmany(timeout_ms=0, max_records=self._max_records)
        if fetched and not self._stopping:
            async with self._handing_over:
                await self._hand_over(fetched)
        await self._commit_acknowledged(wait=False)

    def _report_holding(self) -> None:
        """A hold of more than `HELD_REPORT_SECONDS` is not backpressure but a stall: say what
        it waits for, once per that many seconds."""
        now = asyncio.get_running_loop().time()
        if self._held_since is None:
            self._held_since = self._held_reported = now
            return
        if now - self._held_reported < HELD_REPORT_SECONDS:
            return
        self._held_reported = now
        oldest = self._ahead[0].deliveries if self._ahead else []
        pending = [d for d in oldest if not self._stage1_done(d)][:5]
        log.warning(
            "ingest: held back for %.0f s: %d batches not yet acknowledged, %d acknowledged and "
            "waiting for stage 1%s",
            now - self._held_since,
            len(self._unacknowledged),
            len(self._ahead),
            "; the oldest waits for stage-1 "
            + ", ".join(f"[{d.partition}]@{d.offset}" for d in pending)
            if pending
            else "",
        )

    async def _hand_over(self, fetched: dict[TopicPartition, list[Any]]) -> None:
        records: list[Any] = []
        next_offsets = {}
        for tp, partition_records in fetched.items():
            records.extend(partition_records)
            next_offsets[tp] = partition_records[-1].offset + 1
            # A consumer starts where its group committed: until ingest commits, that is it.
            self._committed.setdefault(tp, partition_records[0].offset)
        acknowledged = asyncio.ensure_future(_awaited(await self._stage.handle(records)))
        batch = _Batch(next_offsets, acknowledged)
        acknowledged.add_done_callback(lambda _: self._note_acknowledged(batch))
        self._unacknowledged.append(batch)
        self.batches += 1

    def _note_acknowledged(self, batch: _Batch) -> None:
        """As soon as a batch is acknowledged (stage 2's wait reads this), before its commit."""
        if batch.acknowledged.cancelled() or batch.acknowledged.exception() is not None:
            return
        for tp, offset in batch.next_offsets.items():
            if offset - 1 > self._delivered.get(tp, -1):
                self._delivered[tp] = offset - 1
        self._on_acknowledged(batch.acknowledged.result())
        self._room.set()

    async def _commit_acknowledged(self, wait: bool) -> None:
        """Commit the leading batches that are acknowledged (all of them, if `wait`)."""
        offsets: dict[TopicPartition, int] = {}
        queue = self._unacknowledged
        while queue and (wait or queue[0].acknowledged.done()):
            batch = queue.popleft()
            batch.deliveries = await batch.acknowledged  # raises if a send failed
            offsets.update(batch.next_offsets)
            self._ahead.append(batch)
        if offsets:
            await self._commit(offsets)

    async def _commit(self, offsets: dict[TopicPartition, int]) -> None:
        assigned = self._consumer.assignment()
        owned = {tp: offset for tp, offset in offsets.items() if tp in assigned}
        if not owned:
            return
        try:
            await self._consumer.commit(owned)
        except Exception as exc:  # a rebalance under way: the new owner reads them again
            log.warning(
                "ingest: commit of %d partitions failed (%r); they will be read again",
                len(owned),
                exc,
            )
            return
        self._committed.update(owned)

    async def flush(self) -> None:
        """Wait for everything handed over and commit it (before a stop)."""
        async with self._handing_over:
            await self._commit_acknowledged(wait=True)

    async def reassign(self, partitions: Iterable[TopicPartition]) -> None:
        """Read `partitions` from now on, each from its committed offset, once everything
        handed over is acknowledged and committed."""
        self._wanted = frozenset(partitions)  # no longer caught up on the new ones meanwhile
        async with self._handing_over:
            await self._commit_acknowledged(wait=True)
            wanted = sorted(self._wanted)
            if set(wanted) != self._consumer.assignment():
                self._consumer.assign(wanted)
                self._committed = {
                    tp: offset for tp, offset in self._committed.items() if tp in wanted
                }
                self.rebalances += 1
            await self._learn_committed(wanted)

    async def _learn_committed(self, partitions: list[TopicPartition]) -> None:
        """Where the group stands on partitions taken without a commit of ours: everything
        below was handed over already, by this worker or another (`caught_up` reads it)."""
        for tp in partitions:
            if tp in self._committed:
                continue
            try:
                offset = await self._consumer.committed(tp)
            except Exception as exc:  # unknown: caught up only once handed over here
                log.warning("ingest: committed offset of %s unknown (%r)", tp, exc)
                continue
            if offset is not None and tp not in self._committed:
                self._committed[tp] = offset

    def stop(self) -> None:
        self._stopping = True

    def delivered_upto(self, partition: TopicPartition) -> int:
        return self._delivered.get(partition, -1)

    def committed(self, partition: TopicPartition) -> int | None:
        return self._committed.get(partition)

    def lag(self) -> int:
        """Messages not yet committed on the partitions held (end offset minus committed)."""
        consumer = self._consumer
        total = 0
        for tp in consumer.assignment():
            end = consumer.highwater(tp)
            committed = self._committed.get(tp)
            if end is not None and committed is not None:
                total += max(0, end - committed)
        return total

    def caught_up(self, partition_number: int) -> bool:
        """Has ingest handed over everything its events partitions of this number held when
        last fetched? (Producers key by actor, so events partition p feeds stage-1 partition p,
        and ingest reads the events partitions of the stage-1 partitions this worker holds.)
        No while it has not been told which partitions to read, or has not yet taken one of
        them or fetched from it: a worker that has just started or been given a partition
        has not read its backlog. Handed over means acknowledged here, or committed by the
        group (by whoever held the partition before). Yes when no events partition has this
        number."""
        wanted = self._wanted
        if wanted is None:
            return False
        consumer = self._consumer
        assigned = consumer.assignment()
        for tp in wanted:
            if tp.partition != partition_number:
                continue
            if tp not in assigned:
                return False
            end = consumer.highwater(tp)
            handed_over = max(self.delivered_upto(tp) + 1, self._committed.get(tp, 0))
            if end is None or handed_over < end:
                return False
        return True


async def _awaited(acknowledged: Awaitable[list[Delivery]]) -> list[Delivery]:
    return await acknowledged
