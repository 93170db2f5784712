"""The runtime's ingest loop as a service of the Faust app: a plain aiokafka consumer in its own
consumer group, `<app_id>-ingest`, beside Faust's. Started once table recovery has finished
(stage 1 is ready for what it sends), stopped before the producer it sends through."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaConsumer
from mode import Service

from service.runtime.ingest import IngestLoop, IngestRebalanceListener
from service.runtime.sinks import Delivery
from service.runtime.stages import IngestStage


class IngestService(Service):
    def __init__(
        self,
        consumer_options: dict[str, Any],
        group_id: str,
        topics: tuple[str, ...],
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
        self._topics = topics
        self._stage = stage
        self._max_records = max_records
        self._max_batches_ahead = max_batches_ahead
        self._stage1_done = stage1_done
        self._on_acknowledged = on_acknowledged
        self._on_fatal = on_fatal
        self.consumer: AIOKafkaConsumer | None = None
        self.loop_: IngestLoop | None = None
        self._running: asyncio.Task[None] | None = None

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
        consumer.subscribe(list(self._topics), listener=IngestRebalanceListener(loop))
        await consumer.start()
        self.consumer, self.loop_ = consumer, loop
        self._running = asyncio.ensure_future(self._run(loop))

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
        return self.loop_ is None or self.loop_.caught_up(partition_number)

    def stage1_progressed(self) -> None:
        if self.loop_ is not None:
            self.loop_.stage1_progressed()

    def lag(self) -> int:
        return 0 if self.loop_ is None else self.loop_.lag()

    @property
    def rebalances(self) -> int:
        return 0 if self.loop_ is None else self.loop_.rebalances
