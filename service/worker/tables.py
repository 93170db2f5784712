"""State in Faust tables, written once per key per stage message.

`CoalescedTable` sits between the pipeline and a Faust table: reads see pending writes,
writes are remembered, `commit()` stores each changed key once and `send()` sends its changelog
record. A key touched by 50 events of one batch costs one record instead of 50.

`send()` bypasses Faust's per-key write path (`table[key] = value`: a future, a callback and
a trip through Faust's 100-message producer buffer per key, a third of the worker's CPU) and
hands encoded records straight to the producer, returning their delivery futures so that the
stage can await them before its progress marker. Records are the bytes Faust itself would
write (the table's own codecs), so Faust's recovery and standbys read them unchanged. They go
to the partition of the message being processed, as Faust does, which is the key's partition
because every stage topic and table has the same partition count and key hashing.

A commit's values reach the store only when its changelog records are sent, after the stage's
outputs are acknowledged; until then reads see them in an overlay. A persistent store
(RocksDB) survives SIGKILL: had it been written at commit, a crash before the outputs were
acknowledged would leave the events marked as seen and their alerts and forwards lost.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Iterator, MutableMapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import orjson
from faust.serializers import codecs
from faust.types import TP

from service.core.state import ActorState, Relation, TargetState

V = TypeVar("V")
_DELETED: Any = object()


class CoalescedTable(MutableMapping[str, V], Generic[V]):
    def __init__(self, table: Any) -> None:
        self.table = table
        self._pending: dict[str, V] = {}
        # Committed changes not yet in the store, oldest first.
        self._unstored: deque[dict[str, V]] = deque()

    def __getitem__(self, key: str) -> V:
        value = self.get(key, _DELETED)
        if value is _DELETED:
            raise KeyError(key)
        result: V = value
        return result

    def get(self, key: str, default: Any = None) -> Any:
        value = self._pending.get(key)
        if value is None and self._unstored:
            for layer in reversed(self._unstored):
                value = layer.get(key)
                if value is not None:
                    break
        if value is None:
            return self.table.data.get(key, default)
        return default if value is _DELETED else value

    def __setitem__(self, key: str, value: V) -> None:
        self._pending[key] = value

    def __delitem__(self, key: str) -> None:
        self._pending[key] = _DELETED

    def __iter__(self) -> Iterator[str]:
        raise TypeError("iterating a table in the hot path is a bug")

    def __len__(self) -> int:
        return len(self.table.data)

    def commit(self) -> tuple[dict[str, V], list[tuple[bytes, bytes | None]]]:
        """Close the pending changes: returns them and their changelog records (key, value or
        None for a deletion). Reads keep seeing them until `store()`. Synchronous on purpose:
        the stages share these tables, and nothing else may run between taking the pending
        set and putting it in the overlay."""
        if not self._pending:
            return {}, []
        pending, self._pending = self._pending, {}
        self._unstored.append(pending)
        table = self.table
        dump_key = codecs.get_codec(table.key_serializer).dumps
        dump_value = codecs.get_codec(table.value_serializer).dumps
        records: list[tuple[bytes, bytes | None]] = [
            (dump_key(key), None if value is _DELETED else dump_value(value))
            for key, value in pending.items()
        ]
        return pending, records

    def store(self, changes: dict[str, V]) -> None:
        """Write a commit's changes to the store; commits are stored in commit order."""
        if not changes:
            return
        self.forget(changes)
        store = self.table.data
        for key, value in changes.items():
            if value is _DELETED:
                store.pop(key, None)
            else:
                store[key] = value

    def forget(self, changes: dict[str, V]) -> None:
        """Drop a commit's changes from the overlay (stored, or abandoned)."""
        for index, layer in enumerate(self._unstored):
            if layer is changes:
                del self._unstored[index]
                return

    async def send(
        self, records: list[tuple[bytes, bytes | None]], partition: int
    ) -> list[Awaitable[Any]]:
        """Hand changelog records to the producer; returns their delivery futures."""
        send = self.table.app.producer.send
        topic = self.table.changelog_topic.get_topic_name()
        return [await send(topic, key, value, partition, None, None) for key, value in records]

    def delivered(self, partition: int, last_offset: int) -> None:
        """Tell a persistent store how far its changelog partition is written, so that
        recovery starts there (what Faust's own send callback does)."""
        tp = TP(self.table.changelog_topic.get_topic_name(), partition)
        self.table.data.set_persisted_offset(tp, last_offset)


@dataclass
class Commit:
    """Changelog records of one `StageTables.commit()`, and its place in the send order."""

    changes: list[dict[str, Any]]
    records: list[list[tuple[bytes, bytes | None]]]
    after: asyncio.Future[None] | None
    handed_over: asyncio.Future[None]

    def release(self) -> None:
        if not self.handed_over.done():
            self.handed_over.set_result(None)


class StageTables:
    """The three tables as the pipeline's `Tables`, with coalesced writes.

    The stages share the tables (stage 1 and stage 2 both write relations; stages 1 and 3
    both write actors) and each waits for its outputs between `commit()` and `send()`. Sends
    therefore go in commit order, or an older value of a key could land in the changelog
    after a newer one and be what recovery restores.
    """

    def __init__(self, actors: Any, targets: Any, relations: Any) -> None:
        self.actors: CoalescedTable[ActorState] = CoalescedTable(actors)
        self.targets: CoalescedTable[TargetState] = CoalescedTable(targets)
        self.relations: CoalescedTable[Relation] = CoalescedTable(relations)
        self._last: asyncio.Future[None] | None = None

    def commit(self) -> Commit:
        """Store every pending change; returns their changelog records, to be sent with
        `send()` (or given up with `abandon()`)."""
        closed = [table.commit() for table in (self.actors, self.targets, self.relations)]
        commit = Commit(
            [changes for changes, _ in closed],
            [records for _, records in closed],
            self._last,
            asyncio.get_running_loop().create_future(),
        )
        self._last = commit.handed_over
        return commit

    async def send(self, commit: Commit, partition: int) -> list[list[Awaitable[Any]]]:
        """Store the changes and send their records to `partition`, once every earlier
        commit's are; returns per table the delivery futures."""
        try:
            if commit.after is not None:
                await commit.after
            tables: tuple[CoalescedTable[Any], ...] = (self.actors, self.targets, self.relations)
            for table, changes in zip(tables, commit.changes, strict=True):
                table.store(changes)
            return [
                await table.send(table_records, partition)
                for table, table_records in zip(tables, commit.records, strict=True)
            ]
        finally:
            commit.release()

    def abandon(self, commit: Commit) -> None:
        """Give up a commit whose outputs failed: its changes are neither stored nor read."""
        tables: tuple[CoalescedTable[Any], ...] = (self.actors, self.targets, self.relations)
        for table, changes in zip(tables, commit.changes, strict=True):
            table.forget(changes)
        commit.release()

    def delivered(self, partition: int, records: list[list[Any]]) -> None:
        tables: tuple[CoalescedTable[Any], ...] = (self.actors, self.targets, self.relations)
        for table, metadata in zip(tables, records, strict=True):
            if metadata:
                table.delivered(partition, max(record.offset for record in metadata))


def progress_key(topic: str, partition: int) -> str:
    """Key of a stage's progress marker. Account ids have no control characters or spaces, so
    it cannot name an account."""
    return f"\x00progress {topic} {partition}"


class ActorStateCodec(codecs.Codec):
    # Values are account states (JSON objects) or progress markers (JSON arrays).
    def _dumps(self, obj: Any) -> bytes:
        return orjson.dumps(obj if isinstance(obj, list) else obj.to_value())

    def _loads(self, s: bytes) -> Any:
        value = orjson.loads(s)
        return value if isinstance(value, list) else ActorState.from_value(value)


class TargetStateCodec(codecs.Codec):
    def _dumps(self, obj: Any) -> bytes:
        return orjson.dumps(obj if isinstance(obj, list) else obj.to_value())

    def _loads(self, s: bytes) -> Any:
        value = orjson.loads(s)
        return value if isinstance(value, list) else TargetState.from_value(value)


class RelationCodec(codecs.Codec):
    def _dumps(self, obj: Any) -> bytes:
        return orjson.dumps(obj)

    def _loads(self, s: bytes) -> Any:
        return orjson.loads(s)


class AccountKeyCodec(codecs.Codec):
    """Keys as plain UTF-8: the same bytes the stage topics are keyed with, so Faust's
    table routing hashes a user id to the partition that holds it, and recovered keys are
    str again (the raw codec would give bytes)."""

    def _dumps(self, obj: Any) -> bytes:
        return obj.encode() if isinstance(obj, str) else bytes(obj)

    def _loads(self, s: bytes) -> Any:
        return s.decode()


KEY_CODEC = "reciprocity_key"
ACTOR_CODEC = "reciprocity_actor_state"
TARGET_CODEC = "reciprocity_target_state"
RELATION_CODEC = "reciprocity_relation"


def register_codecs() -> None:
    codecs.register(KEY_CODEC, AccountKeyCodec())
    codecs.register(ACTOR_CODEC, ActorStateCodec())
    codecs.register(TARGET_CODEC, TargetStateCodec())
    codecs.register(RELATION_CODEC, RelationCodec())
