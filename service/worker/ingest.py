"""The runtime's ingest loop as a service of the Faust app: a plain aiokafka consumer with its
offsets in a consumer group of its own, `<app_id>-ingest`, beside Faust's. It reads the events
partitions of the stage-1 partitions Faust gives this worker (`runtime.ingest` says why), and
follows Faust's rebalances. Started once table recovery has finished (stage 1 is ready for
what it sends), stopped before the producer it sends through."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from mode import Service

from service.runtime.ingest import IngestLoop
from service.runtime.sinks import Delivery
from service.runtime.stages import IngestStage


class IngestService(Service):
    def __init__(
        self,
        consumer_options: dict[str, Any],
        group_id: str,
        events_partitions: Callable[[], dict[str, int]],
        stage_partitions: int,
        stage: IngestStage,
        *,
        max_records: int,
        max_batches_ahead: int,
        stage1_done: Callable[[Delivery], bool],
        on_acknowledged: Callable[[list[Delivery]], None],
        on_fatal: Callable[[BaseException], Awaitable[None]],
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._consumer_options = consumer_options
        self._group_id = group_id
        self._partition_counts = events_partitions
        self._stage_partitions = stage_partitions
        self._stage = stage
        self._max_records = max_records
        self._max_batches_ahead = max_batches_ahead
        self._stage1_done = stage1_done
        self._on_acknowledged = on_acknowledged
        self._on_fatal = on_fatal
        self.consumer: AIOKafkaConsumer | None = None
        self.loop_: IngestLoop | None = None
        self._running: asyncio.Task[None] | None = None
        self._events_partitions: dict[str, set[int]] = {}
        self._stage1_partitions: set[int] = set()

    async def on_start(self) -> None:
        consumer = AIOKafkaConsumer(
            **self._consumer_options,
            group_id=self._group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=self._max_records,
        )
        loop = IngestLoop(
            consumer,
            self._stage,
            max_records=self._max_records,
            max_batches_ahead=self._max_batches_ahead,
            stage1_done=self._stage1_done,
            on_acknowledged=self._on_acknowledged,
        )
        await consumer.start()
        self._events_partitions = {
            topic: set(range(count)) for topic, count in self._partition_counts().items()
        }
        self.consumer, self.loop_ = consumer, loop
        await loop.reassign(self._events_for(self._stage1_partitions))
        self._running = asyncio.ensure_future(self._run(loop))

    async def follow(self, stage1_partitions: set[int]) -> None:
        """The stages' assignment changed: read the matching events partitions (those handed
        over so far are acknowledged and committed first)."""
        self._stage1_partitions = set(stage1_partitions)
        if self.loop_ is not None:
            try:
                await self.loop_.reassign(self._events_for(self._stage1_partitions))
            except Exception as exc:
                await self._on_fatal(exc)

    def _events_for(self, stage1_partitions: set[int]) -> list[TopicPartition]:
        return [
            TopicPartition(topic, partition)
            for topic, partitions in self._events_partitions.items()
            for partition in sorted(partitions)
            if partition % self._stage_partitions in stage1_partitions
        ]

    async def _run(self, loop: IngestLoop) -> None:
        try:
            await loop.run()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            self.log.error("ingest stopped: %r", exc)
            await self._on_fatal(exc)

    async def on_stop(self) -> None:
        loop, consumer, running = self.loop_, self.consumer, self._running
        if loop is not None:
            loop.stop()
        if running is not None:
            await asyncio.wait({running}, timeout=5)
            if not running.done():
                running.cancel()
        if loop is not None:
            try:
                await asyncio.wait_for(loop.flush(), timeout=10)
            except Exception as exc:  # nothing committed: the input is read again
                self.log.warning("ingest: final commit failed: %r", exc)
        if consumer is not None:
            await consumer.stop()

    def caught_up(self, partition_number: int) -> bool:
        # Not started yet: it will hand over a backlog (stage 2's wait must not end on it).
        return self.loop_ is not None and self.loop_.caught_up(partition_number)

    def stage1_progressed(self) -> None:
        if self.loop_ is not None:
            self.loop_.stage1_progressed()

    def lag(self) -> int:
        return 0 if self.loop_ is None else self.loop_.lag()

    @property
    def rebalances(self) -> int:
        return 0 if self.loop_ is None else self.loop_.rebalances
