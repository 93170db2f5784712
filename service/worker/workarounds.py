"""Where Faust does not do what the delivery protocol needs, and what we do instead. Each names
its faust-streaming issue or the Faust behaviour it works around.

1. Skipped input offsets (faust-streaming #216, #221): messages fetched in an old generation
   are dropped unprocessed around a rebalance, and offsets the consumer sees jump are treated
   as committed. A stage knows the next offset it needs (its progress marker), so it notices
   the jump and reads the missing range itself, with a plain consumer of its own assigned to
   that one partition (no group, no commits), applying those messages first, in order
   (`MissedMessages`, `with_skipped`). Seeking Faust's consumer back instead races with what
   it has already fetched: each message of the old batch moves its read offset past the seek
   again and the re-fetched messages are dropped as old, so a seek could take many retries or
   never land.
2. Generation checks: a read-back stops as soon as a rebalance starts or the consumer's
   generation changes; whoever owns the partition next finds the same gap from the stored
   marker (`Ownership`).
3. Changelog topics built with the wrong serializers: Faust derives a table's serializers from
   `key_type`/`value_type` only, and registering the table already built its changelog topic
   with JSON serializers, which recovery then decodes with. Ours are codecs: the topic is built
   again with them (`use_codecs`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from service.runtime.checkpoint import Record


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


class Ownership:
    """Does this worker still hold what it held when a read-back started?"""

    def __init__(self, app: Any) -> None:
        self._app = app

    def while_assigned(self) -> Callable[[], bool]:
        """True until a rebalance starts or the consumer generation changes."""
        app = self._app
        generation = app.consumer_generation_id

        def owned() -> bool:
            return app.consumer_generation_id == generation and not app.rebalancing

        return owned

    def while_running(self) -> Callable[[], bool]:
        app = self._app
        return lambda: not app.should_stop


async def with_skipped(
    reader: MissedMessages,
    source: Any,
    expected: int,
    owned: Callable[[], bool],
    on_read: Callable[[int], None],
) -> AsyncIterator[Record]:
    """The input messages to apply for `source`: first those the consumer skipped between
    `expected` (the next offset the stage needs; -1: unknown) and `source`, read back, then
    `source` itself. Nothing once ownership is lost."""
    if 0 <= expected < source.offset:
        async for records in reader.read(
            source.topic, source.partition, expected, source.offset, owned
        ):
            on_read(len(records))
            for record in records:
                yield record
        if not owned():
            return
    yield source


def use_codecs(table: Any, key_codec: str, value_codec: str) -> Any:
    """Give a Faust table our codecs, its changelog topic included (item 3 above)."""
    table.key_serializer = key_codec
    table.value_serializer = value_codec
    table._changelog_topic = table._new_changelog_topic()
    return table
