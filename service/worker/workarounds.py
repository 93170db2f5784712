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
   A skipped range at a partition's tail has nothing after it to reveal it: `TailGaps` finds
   partitions whose committed offset is past the stage's marker, or whose fetch position has
   been past it for a while (a message fetched and dropped without a commit; or, seen in the
   two-process benchmark, a partition kept over a rebalance with nothing committed yet, which
   Faust's seek to the committed offsets leaves where its fetching had got to). Ingest, holding
   back until stage 1 handles what it sent, then sends nothing after it, and stage 2 waits for
   stage 1. The stage is sent an empty message there, which wakes it up to read the range
   back.
2. Generation checks: a read-back stops as soon as a rebalance starts or the consumer's
   generation changes; whoever owns the partition next finds the same gap from the stored
   marker (`Ownership`).
3. Changelog topics built with the wrong serializers: Faust derives a table's serializers from
   `key_type`/`value_type` only, and registering the table already built its changelog topic
   with JSON serializers, which recovery then decodes with. Ours are codecs: the topic is built
   again with them (`use_codecs`).
4. Per-message sensors: Faust's Monitor updates counters, dicts and timestamps for every
   message and event it dispatches, and its Prometheus sensor (`setup_prometheus_sensors`)
   adds label look-ups and a regex per message; neither can be switched off by a setting.
   `QuietMonitor` keeps only what Faust itself reads back (the livelock check's inbound
   times); our own metrics cover what operators used the sensors for (`worker.lag`).
5. Committed offsets: Faust's consumer has no public accessor for the offset it last
   committed per partition; `committed_offsets` reads the one it keeps (`_committed_offset`).
6. Store writes outside stream iteration (faust-streaming #497): the RocksDB store finds the
   partition of a key written through `store[key] = value` from the current stream event and
   fails without one. The runtime stores a commit's values once its changelog records are
   acknowledged, in a task of its own, and knows the partition: `PartitionedWrites` writes the
   partition's database directly.
7. No way to hand a message back (cf. faust-streaming #527: manual acks around a rebalance).
   A stage that leaves a message unapplied (stage 2's wait interrupted by a rebalance) must
   not ack it yet (Faust would commit past it), nor leave it pending (the rebalance waits, in
   `wait_empty`, until every message handed out is acked). `ReleasedMessages` takes it out of
   the pending set and acks it once a later message of its partition is stored: after the
   rebalance Faust may deliver it again, or only later ones, and then the stage reads it back
   (item 1) before applying them. Left unacked for good, it would hold Faust's commits for the
   partition at its offset.
8. Partitions that are no longer fetched (faust-streaming #629: after a rebalance a partition
   can go unfetched with no error, its lag only growing). Faust fetches only its "active"
   partitions, and takes one out while it is paused or its stream buffer is full, putting it
   back when the buffer drains; a rebalance that clears the buffer in between can leave it out.
   `UnfetchedPartitions` finds a stage partition this worker holds that has been out of the
   active set for a minute while the flow runs, and it is put back (a full buffer then only
   makes the fetcher wait, as it does for any partition).
9. The memory store forgets where its data stands (Faust's `stores/memory.py`:
   `persisted_offset` "always returns None when using the in-memory store"). Faust's
   rebalances are eager: every partition is revoked and assigned again, and recovery starts a
   partition without a persisted offset from the changelog's beginning, so a worker re-read
   every changelog record of the partitions it kept, with its streams stopped, at each
   rebalance (about 2,000 records a second here: 7 s for 15,000 records in a two-process
   benchmark run; minutes for a million accounts). `OffsetKeepingMemoryStore` remembers the
   offset each partition's data has reached, from the commits (`set_persisted_offset`, as the
   RocksDB store does) and from recovery's batches, and forgets it when Faust drops the
   partition's data after a rebalance; a kept partition's recovery then reads only what was
   written after it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.sensors import Monitor
from faust.stores.memory import Store as MemoryStore
from faust.types import TP

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


class ReleasedMessages:
    """Item 7: a stage's messages left unapplied, out of Faust's pending set (its rebalance
    waits for that set to empty) and not acked, until a later message of their partition is
    stored: the stage applies in offset order, reading back what it has not applied, so that
    one's ack covers theirs too. If Faust delivers one again instead, its new copy is acked."""

    def __init__(self, consumer: Any) -> None:
        self._consumer = consumer
        self._events: dict[int, list[Any]] = {}

    def add(self, event: Any) -> None:
        self._consumer.unacked.discard(event.message)
        self._events.setdefault(event.message.partition, []).append(event)

    def before(self, partition: int, offset: int) -> list[Any]:
        """Those of `partition` below `offset`, given up here: the caller acks them with it."""
        events = self._events.get(partition)
        if not events:
            return []
        earlier = [event for event in events if event.message.offset < offset]
        self._events[partition] = [event for event in events if event.message.offset >= offset]
        return earlier


class Ownership:
    """Does this worker still hold what it held when a read-back started?"""

    def __init__(self, app: Any) -> None:
        self._app = app

    def while_assigned(self) -> Callable[[], bool]:
        """True until partitions are revoked (Faust suspends the flow) or the consumer
        generation changes. Not `app.rebalancing`, which stays true for a while after the flow
        resumes on the new assignment."""
        app = self._app
        generation = app.consumer_generation_id

        def owned() -> bool:
            return bool(app.consumer_generation_id == generation and app.flow_control.is_active())

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


class OffsetKeepingMemoryStore(MemoryStore[Any, Any]):
    """Faust's memory store with a persisted offset per changelog partition (item 9 above)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self._offsets: dict[TP, int] = {}

    def persisted_offset(self, tp: TP) -> int | None:
        return self._offsets.get(tp)

    def set_persisted_offset(self, tp: TP, offset: int) -> None:
        self._offsets[tp] = offset

    def apply_changelog_batch(
        self,
        batch: Iterable[Any],
        to_key: Callable[[Any], Any],
        to_value: Callable[[Any], Any],
    ) -> None:
        events = list(batch)
        super().apply_changelog_batch(events, to_key, to_value)
        for event in events:
            tp, offset = event.message.tp, event.message.offset
            if offset > self._offsets.get(tp, -1):
                self._offsets[tp] = offset

    async def on_recovery_completed(self, active_tps: set[TP], standby_tps: set[TP]) -> None:
        # Faust drops the data of every partition not active here now: so go their offsets.
        await super().on_recovery_completed(active_tps, standby_tps)
        partitions = {partition for _, partition in active_tps}
        self._offsets = {
            tp: offset for tp, offset in self._offsets.items() if tp.partition in partitions
        }


def keep_memory_offsets(table: Any) -> Any:
    """Give a Faust table an `OffsetKeepingMemoryStore` where it would make a memory store."""
    make_store = table._new_store_by_url

    def new_store_by_url(url: Any) -> Any:
        if not str(url).startswith("memory:"):
            return make_store(url)
        return OffsetKeepingMemoryStore(
            url,
            table.app,
            table,
            table_name=table.name,
            key_type=table.key_type,
            key_serializer=table.key_serializer,
            value_serializer=table.value_serializer,
            value_type=table.value_type,
            loop=table.loop,
            options=table.options,
        )

    table._new_store_by_url = new_store_by_url
    return table


class QuietMonitor(Monitor):
    """Faust's Monitor without its per-message and per-event bookkeeping (item 4 above)."""

    def on_message_in(self, tp: Any, offset: int, message: Any) -> None:
        return None

    def on_stream_event_in(self, tp: Any, offset: int, stream: Any, event: Any) -> None:
        # Faust's livelock check reads this (SLOW_PROCESSING errors every few seconds without).
        self.stream_inbound_time[tp] = self.time()

    def on_stream_event_out(
        self, tp: Any, offset: int, stream: Any, event: Any, state: Any = None
    ) -> None:
        return None

    def on_message_out(self, tp: Any, offset: int, message: Any) -> None:
        return None

    def on_table_get(self, table: Any, key: Any) -> None:
        return None

    def on_table_set(self, table: Any, key: Any, value: Any) -> None:
        return None

    def on_table_del(self, table: Any, key: Any) -> None:
        return None

    def on_send_initiated(
        self, producer: Any, topic: str, message: Any, keysize: int, valsize: int
    ) -> Any:
        return None

    def on_send_completed(self, producer: Any, state: Any, metadata: Any) -> None:
        return None

    def on_send_error(self, producer: Any, exc: BaseException, state: Any) -> None:
        return None

    def track_tp_end_offset(self, tp: Any, offset: int) -> None:
        return None


class TailGaps:
    """Item 1 at a partition's tail: stage partitions whose next needed message Faust will not
    hand to the stage. Either Faust committed past what the stage applied (it acks the
    messages it skips), named at once, once per committed offset; or Faust's consumer has
    fetched past it without a commit (a rebalance interrupted its hand-over, or the consumer's
    position moved on while no offset was committed to seek back to), named once that has
    lasted its partition's `grace_seconds`: a message fetched and waiting in the stream's
    buffer looks the same for as long as the stage is busy before it (stage 2 may wait for
    stage 1)."""

    def __init__(self, grace_seconds: Callable[[TP], float]) -> None:
        self._grace = grace_seconds
        self._woken: dict[TP, int] = {}
        self._fetched_past_since: dict[TP, tuple[int, float]] = {}  # tp -> (needed, since)
        self._woken_fetched_past: dict[TP, int] = {}

    def to_wake(
        self,
        committed: dict[TP, int],
        next_offset: Callable[[TP], int | None],
        positions: dict[TP, int] | None = None,
        now: float = 0.0,
    ) -> list[TP]:
        """`next_offset`: the offset the stage needs next on a partition it holds, else None;
        `positions`: the consumer's fetch position per partition (the next offset it fetches)."""
        found = []
        for tp, offset in committed.items():
            needed = next_offset(tp)
            if needed is None or offset <= needed or self._woken.get(tp) == offset:
                continue
            self._woken[tp] = offset
            found.append(tp)
        fetched_past = {}
        for tp, position in (positions or {}).items():
            needed = next_offset(tp)
            if needed is not None and tp not in found and position > needed:
                fetched_past[tp] = needed
        self._fetched_past_since = {
            tp: since
            if (since := self._fetched_past_since.get(tp)) and since[0] == needed
            else (needed, now)
            for tp, needed in fetched_past.items()
        }
        for tp, (needed, since_s) in self._fetched_past_since.items():
            if now - since_s >= self._grace(tp) and self._woken_fetched_past.get(tp) != needed:
                self._woken_fetched_past[tp] = needed
                found.append(tp)
        return found


class UnfetchedPartitions:
    """Item 8: held partitions left out of Faust's active set for `grace_seconds` on end."""

    def __init__(self, grace_seconds: float) -> None:
        self._grace = grace_seconds
        self._since: dict[TP, float] = {}

    def to_refetch(self, held: set[TP], active: set[TP], now: float) -> list[TP]:
        """Call only while the flow runs: a rebalance takes partitions out on purpose."""
        left_out = held - active
        self._since = {tp: self._since.get(tp, now) for tp in left_out}
        due = [tp for tp, since in self._since.items() if now - since >= self._grace]
        for tp in due:
            del self._since[tp]
        return due

    def reset(self) -> None:
        self._since.clear()


def refetch(consumer: Any, tps: list[TP]) -> None:
    """Put partitions back into Faust's fetching (item 8)."""
    consumer.resume_partitions(tps)  # leaves the paused set, joins the active one
    consumer._buffered_partitions.difference_update(tps)


def active_partitions(consumer: Any) -> set[TP]:
    """The partitions Faust's consumer fetches now (item 8)."""
    return set(consumer._get_active_partitions())


def fetch_positions(consumer: Any, partitions: set[TP]) -> dict[TP, int]:
    """The next offset Faust's consumer fetches per partition, where it has one (item 1)."""
    subscription = consumer._thread._ensure_consumer()._subscription.subscription
    assignment = None if subscription is None else subscription.assignment
    positions = {}
    for tp in partitions:
        try:
            state = assignment.state_value(tp) if assignment is not None else None
        except (KeyError, AssertionError):
            continue
        if state is not None and state.has_valid_position:
            positions[tp] = int(state.position)
    return positions


def committed_offsets(consumer: Any) -> dict[TP, int]:
    """The next offset to read per partition, as Faust's consumer last committed it (item 5)."""
    return {tp: offset for tp, offset in consumer._committed_offset.items() if offset is not None}


class PartitionedWrites:
    """Writes to a Faust store for a known partition, without a current stream event (item 6).
    The memory store is a dict (and notes each key's partition as its own recovery does, so
    that keys of partitions given away are dropped after a rebalance); the RocksDB store gets
    the key and value encoded as its own `__setitem__` would, in the partition's database."""

    def __init__(self, store: Any) -> None:
        self._store = store
        memory = isinstance(store, MemoryStore)
        self._memory: dict[Any, Any] | None = store.data if memory else None
        self._partitions: dict[Any, int] | None = store._key_partition if memory else None
        self._rocksdb = not memory and hasattr(store, "_db_for_partition")

    def put(self, key: str, value: Any, partition: int) -> None:
        if self._memory is not None and self._partitions is not None:
            self._memory[key] = value
            self._partitions[key] = partition
        elif self._rocksdb:
            store = self._store
            raw = store._encode_key(key)
            store._key_index[raw] = partition
            store._db_for_partition(partition).put(raw, store._encode_value(value))
        else:
            self._store[key] = value

    def delete(self, key: str, partition: int) -> None:
        if self._memory is not None and self._partitions is not None:
            self._memory.pop(key, None)
            self._partitions.pop(key, None)
        elif self._rocksdb:
            self._store._del(self._store._encode_key(key))
        else:
            self._store.pop(key, None)
