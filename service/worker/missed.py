"""Reading back input messages the stage consumer skipped.

Faust can skip input offsets around a rebalance: messages fetched in the old generation are
dropped unprocessed, and offsets it sees jump are treated as committed (faust-streaming #216,
#221). A stage knows the next offset it needs (its progress marker, or for ingest the last
offset it took in this assignment), so it notices the jump. It then reads the missing range
itself, with a plain consumer of its own assigned to that one partition (no group, no
commits), and applies those messages first, in order.

Seeking Faust's consumer back instead races with what it has already fetched: each message
of the old batch moves its read offset past the seek again and the re-fetched messages are
dropped as old, so a seek could take many retries or never land.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, TopicPartition


class Record(Protocol):
    """What a stage reads of an input message: Faust's messages and aiokafka's records both."""

    @property
    def topic(self) -> str: ...

    @property
    def partition(self) -> int: ...

    @property
    def offset(self) -> int: ...

    @property
    def key(self) -> bytes | None: ...

    @property
    def value(self) -> bytes | None: ...


class MissedMessages:
    """One stage's reader of skipped ranges. Its consumer starts on the first gap and is
    reused; a stage handles one message at a time, so one consumer per stage is enough."""

    def __init__(self, consumer_options: dict[str, Any], fetch_timeout_ms: int = 1000) -> None:
        self._options = consumer_options
        self._fetch_timeout_ms = fetch_timeout_ms
        self._consumer: AIOKafkaConsumer | None = None

    async def read(
        self, topic: str, partition: int, start: int, end: int, owned: Callable[[], bool]
    ) -> AsyncIterator[list[Any]]:
        """Yield, in batches and in order, the messages of `topic`/`partition` from `start`
        up to but not including `end`. Offsets deleted by retention are gone: reading starts
        at the log start then. Stops early once `owned()` turns false (a rebalance: the new
        owner finds the same gap from the stored marker)."""
        if not owned():
            return
        consumer = await self._started()
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        consumer.seek(tp, start)
        while owned():
            batches = await consumer.getmany(tp, timeout_ms=self._fetch_timeout_ms)
            records = [record for record in batches.get(tp, ()) if record.offset < end]
            if records:
                yield records
            if await consumer.position(tp) >= end:
                return

    async def _started(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            consumer = AIOKafkaConsumer(
                **self._options,
                group_id=None,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
            )
            await consumer.start()
            self._consumer = consumer
        return self._consumer

    async def close(self) -> None:
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            await consumer.stop()
