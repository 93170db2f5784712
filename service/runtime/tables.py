"""State tables as the core's `Tables`: an overlay of unacknowledged writes over a store, and a
changelog that the store can be rebuilt from.

    core ──writes──▶ pending ──commit()──▶ unstored layers ──store()──▶ store
                                   │ (reads see all three, newest first)
                                   └──records──▶ changelog (sent after the outputs are acked)

A stage message's writes are coalesced: a key touched by 50 events costs one changelog record.
A commit's values reach the store only once the stage's outputs are acknowledged; until then
reads see them in the overlay. A persistent store (RocksDB) survives SIGKILL: had it been
written at commit, a crash before the outputs were acknowledged would leave the events marked
as seen and their alerts and forwards lost.

`Store` and `Changelog` are small interfaces: Faust's table store and a Kafka changelog topic in
the worker (`service.worker`), `MemoryStore` and `MemoryChangelog` here for tests.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

import orjson

from service.core.state import ActorState, Relation, TargetState

V = TypeVar("V")
ChangelogRecord = tuple[bytes, bytes | None]  # key, value (None: a deletion)
_DELETED: Any = object()


class Store(Protocol):
    """Where a table's values live between messages."""

    def get(self, key: str, default: Any = None) -> Any: ...

    def __setitem__(self, key: str, value: Any) -> None: ...

    def pop(self, key: str, default: Any = None) -> Any: ...

    def __len__(self) -> int: ...

    def stored_upto(self, partition: int, offset: int) -> None:
        """The changelog partition is written up to `offset` (where recovery resumes)."""


class Changelog(Protocol):
    async def send(self, partition: int, records: Sequence[ChangelogRecord]) -> Awaitable[int]:
        """Hand the records over, in order after any sent before; the awaitable resolves to
        the last record's offset once all are acknowledged."""


class MemoryStore(dict[str, Any]):
    """A store in a dict, remembering how far each changelog partition was stored."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.offsets: dict[int, int] = {}

    def stored_upto(self, partition: int, offset: int) -> None:
        self.offsets[partition] = offset


@dataclass
class MemoryChangelog:
    """A changelog topic in lists, one per partition. `fail` makes the next sends raise (a
    broker that refuses them)."""

    partitions: dict[int, list[ChangelogRecord]] = field(default_factory=dict)
    fail: Exception | None = None

    async def send(self, partition: int, records: Sequence[ChangelogRecord]) -> Awaitable[int]:
        if self.fail is not None:
            raise self.fail
        log = self.partitions.setdefault(partition, [])
        log.extend(records)
        done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        done.set_result(len(log) - 1)
        return done

    def replay(self, partition: int | None = None) -> Iterator[ChangelogRecord]:
        """The records in log order, as recovery reads them."""
        for number in sorted(self.partitions) if partition is None else [partition]:
            yield from self.partitions.get(number, ())


@dataclass(frozen=True)
class Codec:
    """A table's key and value bytes (the changelog and any persistent store hold these)."""

    dumps: Callable[[Any], bytes]
    loads: Callable[[bytes], Any]


def _dump_key(key: Any) -> bytes:
    return key.encode() if isinstance(key, str) else bytes(key)


# Keys as plain UTF-8: the bytes the stage topics are keyed with, so a user id hashes to the
# partition that holds it.
KEY_CODEC = Codec(_dump_key, lambda raw: raw.decode())


def _dump_state(value: Any) -> bytes:
    # Account states are JSON objects; progress markers (runtime.progress) JSON arrays.
    return orjson.dumps(value if isinstance(value, list) else value.to_value())


def _load_actor(raw: bytes) -> Any:
    value = orjson.loads(raw)
    return value if isinstance(value, list) else ActorState.from_value(value)


def _load_target(raw: bytes) -> Any:
    value = orjson.loads(raw)
    return value if isinstance(value, list) else TargetState.from_value(value)


ACTOR_CODEC = Codec(_dump_state, _load_actor)
TARGET_CODEC = Codec(_dump_state, _load_target)
RELATION_CODEC = Codec(orjson.dumps, orjson.loads)


class OverlayTable(MutableMapping[str, V], Generic[V]):
    """One table: reads see pending writes, then unstored commits, then the store."""

    def __init__(self, name: str, store: Store, changelog: Changelog, codec: Codec) -> None:
        self.name = name
        self.store = store
        self.changelog = changelog
        self.codec = codec
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
            return self.store.get(key, default)
        return default if value is _DELETED else value

    def __setitem__(self, key: str, value: V) -> None:
        self._pending[key] = value

    def __delitem__(self, key: str) -> None:
        self._pending[key] = _DELETED

    def __iter__(self) -> Iterator[str]:
        raise TypeError("iterating a table in the hot path is a bug")

    def __len__(self) -> int:
        return len(self.store)

    def commit(self) -> tuple[dict[str, V], list[ChangelogRecord]]:
        """Close the pending changes: returns them and their changelog records. Reads keep
        seeing them until `store()` or `forget()`. Synchronous on purpose: the stages share
        these tables, and nothing else may run between taking the pending set and putting it
        in the overlay."""
        if not self._pending:
            return {}, []
        pending, self._pending = self._pending, {}
        self._unstored.append(pending)
        dump_key, dump_value = KEY_CODEC.dumps, self.codec.dumps
        records: list[ChangelogRecord] = [
            (dump_key(key), None if value is _DELETED else dump_value(value))
            for key, value in pending.items()
        ]
        return pending, records

    def store_changes(self, changes: dict[str, V]) -> None:
        """Write a commit's changes to the store; commits are stored in commit order."""
        if not changes:
            return
        self.forget(changes)
        store = self.store
        for key, value in changes.items():
            if value is _DELETED:
                store.pop(key, None)
            else:
                store[key] = value

    def forget(self, changes: dict[str, V]) -> None:
        """Drop a commit's changes from the overlay (stored, or given up)."""
        for index, layer in enumerate(self._unstored):
            if layer is changes:
                del self._unstored[index]
                return


# A commit's turns, each taken in commit order across the stages that share the tables: hand
# the relation records over, hand the account records over, store the values.
_TURNS = 3


@dataclass
class Commit:
    """The changes of one `StateTables.commit()`, per table, and its place in the send order."""

    changes: list[dict[str, Any]]
    records: list[list[ChangelogRecord]]
    after: list[asyncio.Future[None]] | None  # the previous commit's turns
    turns: list[asyncio.Future[None]]

    async def wait_turn(self, turn: int) -> None:
        if self.after is not None:
            await self.after[turn]

    def end_turn(self, turn: int) -> None:
        if not self.turns[turn].done():
            self.turns[turn].set_result(None)

    def release(self) -> None:
        for turn in range(_TURNS):
            self.end_turn(turn)


class StateTables:
    """The three tables as the core's `Tables`.

    The stages share them (stages 1 and 2 both write relations; stages 1 and 3 both write
    actors) and each waits for its outputs between `commit()` and `send()`. Sends therefore
    go in commit order, or an older value of a key could land in the changelog after a newer
    one and be what recovery restores; values reach the store in commit order too.

    Relation records are acknowledged before the account records are sent. An account's state
    holds the ids of the events applied to it, which make a re-delivered event a duplicate; a
    crash between the two sends thus leaves the message's events unseen, and applying it again
    redoes the relation changes, which are idempotent per event (a relation row records the
    event that last changed it). The other order would leave the events seen and their
    relation changes lost. Values reach the store only once acknowledged: a persistent store
    never holds what its changelog, the state a new owner rebuilds, lacks.
    """

    def __init__(
        self,
        actors: OverlayTable[ActorState],
        targets: OverlayTable[TargetState],
        relations: OverlayTable[Relation],
    ) -> None:
        self.actors = actors
        self.targets = targets
        self.relations = relations
        self.all: tuple[OverlayTable[Any], ...] = (actors, targets, relations)
        self._last: list[asyncio.Future[None]] | None = None

    def commit(self) -> Commit:
        """Close every table's pending changes into one commit, to be sent with `send()` (or
        given up with `abandon()`)."""
        closed = [table.commit() for table in self.all]
        loop = asyncio.get_running_loop()
        commit = Commit(
            [changes for changes, _ in closed],
            [records for _, records in closed],
            self._last,
            [loop.create_future() for _ in range(_TURNS)],
        )
        self._last = commit.turns
        return commit

    async def send(self, commit: Commit, partition: int) -> int:
        """Send the commit's records to `partition` of each changelog, relations first, wait
        for them, then store the values; returns how many records."""
        records = {
            table.name: table_records
            for table, table_records in zip(self.all, commit.records, strict=True)
        }
        offsets: dict[str, int] = {}
        try:
            for turn, tables in enumerate(((self.relations,), (self.targets, self.actors))):
                await commit.wait_turn(turn)
                sent = [
                    (table.name, await table.changelog.send(partition, records[table.name]))
                    for table in tables
                    if records[table.name]
                ]
                commit.end_turn(turn)
                for name, delivered in sent:
                    offsets[name] = await delivered
            await commit.wait_turn(2)
            for table, changes in zip(self.all, commit.changes, strict=True):
                table.store_changes(changes)
                if table.name in offsets:
                    table.store.stored_upto(partition, offsets[table.name])
        finally:
            commit.release()
        return sum(len(table_records) for table_records in commit.records)

    def abandon(self, commit: Commit) -> None:
        """Give up a commit: its changes are neither stored nor read."""
        for table, changes in zip(self.all, commit.changes, strict=True):
            table.forget(changes)
        commit.release()
