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

from service.core.rule_quota import QuotaState
from service.core.state import ActorState, Relation, TargetState

V = TypeVar("V")
ChangelogRecord = tuple[bytes, bytes | None]  # key, value (None: a deletion)
_DELETED: Any = object()


class Store(Protocol):
    """Where a table's values live between messages."""

    def get(self, key: str, default: Any = None) -> Any: ...

    def put(self, key: str, value: Any, partition: int) -> None: ...

    def delete(self, key: str, partition: int) -> None: ...

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

    def put(self, key: str, value: Any, partition: int) -> None:
        self[key] = value

    def delete(self, key: str, partition: int) -> None:
        self.pop(key, None)

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


def _load_quota(raw: bytes) -> Any:
    value = orjson.loads(raw)
    return value if isinstance(value, list) else QuotaState.from_value(value)


ACTOR_CODEC = Codec(_dump_state, _load_actor)
TARGET_CODEC = Codec(_dump_state, _load_target)
RELATION_CODEC = Codec(orjson.dumps, orjson.loads)
QUOTA_CODEC = Codec(_dump_state, _load_quota)


class OverlayTable(MutableMapping[str, V], Generic[V]):
    """One table: reads see pending writes, then unstored commits (newest first), then the
    store. A read is two dict lookups however many commits are unstored."""

    def __init__(self, name: str, store: Store, changelog: Changelog, codec: Codec) -> None:
        self.name = name
        self.store = store
        self.changelog = changelog
        self.codec = codec
        self._pending: dict[str, V] = {}
        # Committed changes not yet in the store, oldest first, and per key the newest layer
        # that holds it.
        self._unstored: deque[dict[str, V]] = deque()
        self._newest: dict[str, dict[str, V]] = {}

    def __getitem__(self, key: str) -> V:
        value = self.get(key, _DELETED)
        if value is _DELETED:
            raise KeyError(key)
        result: V = value
        return result

    def get(self, key: str, default: Any = None) -> Any:
        value = self._pending.get(key)
        if value is None:
            layer = self._newest.get(key)
            if layer is None:
                return self.store.get(key, default)
            value = layer[key]
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
        """Close the pending changes: returns them and their changelog records, encoded now
        (the core goes on updating the same objects in place). Reads keep seeing them until
        `store_changes()` or `forget()`. Synchronous on purpose: the stages share these tables,
        and nothing else may run between taking the pending set and putting it in the overlay."""
        if not self._pending:
            return {}, []
        layer, self._pending = self._pending, {}
        self._unstored.append(layer)
        self._newest.update(dict.fromkeys(layer, layer))
        dump_value = self.codec.dumps
        records: list[ChangelogRecord] = [
            (key.encode(), None if value is _DELETED else dump_value(value))
            for key, value in layer.items()
        ]
        return layer, records

    def store_changes(self, changes: dict[str, V], partition: int) -> None:
        """Write a commit's changes to the store; commits are stored in commit order."""
        if not changes:
            return
        store = self.store
        for key, value in changes.items():
            if value is _DELETED:
                store.delete(key, partition)
            else:
                store.put(key, value, partition)
        self.forget(changes)

    def forget(self, changes: dict[str, V]) -> None:
        """Drop a commit's changes from the overlay (stored, or given up)."""
        unstored = self._unstored
        oldest = bool(unstored) and unstored[0] is changes
        if oldest:
            unstored.popleft()
        else:
            for index, layer in enumerate(unstored):
                if layer is changes:
                    del unstored[index]
                    break
            else:
                return
        newest = self._newest
        for key in changes:
            if newest.get(key) is changes:
                del newest[key]
                if not oldest:
                    # A layer given up: an older unstored one may still hold the key.
                    for layer in reversed(unstored):
                        if key in layer:
                            newest[key] = layer
                            break


@dataclass
class Commit:
    """The changes of one `StateTables.commit()`, per table, and the changelog partition their
    records go to (the partition of the message that wrote them)."""

    changes: list[dict[str, Any]]
    records: list[list[ChangelogRecord]]
    partition: int


class StateTables:
    """The three tables as the core's `Tables`, shared by the stages (stages 1 and 2 both write
    relations; stages 1 and 3 both write actors), and the quota stage's table of rule states
    when a rule has a quota.

    Commits are sent in groups (`send`), merged per table and partition in commit order (the
    last value of a key wins, as recovery would restore it), so that a group of many messages
    costs one producer batch per changelog partition.

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
        quotas: OverlayTable[QuotaState] | None = None,
    ) -> None:
        self.actors = actors
        self.targets = targets
        self.relations = relations
        self.quotas = quotas
        self.all: tuple[OverlayTable[Any], ...] = (actors, targets, relations)
        if quotas is not None:
            self.all += (quotas,)

    def commit(self, partition: int) -> Commit:
        """Close every table's pending changes into one commit. Reads keep seeing it until it
        is stored (`send`) or given up (`abandon`)."""
        closed = [table.commit() for table in self.all]
        return Commit(
            [changes for changes, _ in closed], [records for _, records in closed], partition
        )

    async def send(self, commits: Sequence[Commit]) -> int:
        """Send the commits' records, relations first, wait for them, then store the values
        in commit order; returns how many records went out."""
        sent = 0
        offsets: dict[tuple[int, int], int] = {}
        # Indexes into self.all: relations, then the others.
        relations_first = ((2,), tuple(index for index in range(len(self.all)) if index != 2))
        for tables in relations_first:
            pending = []
            for index in tables:
                merged: dict[int, dict[bytes, bytes | None]] = {}
                for commit in commits:
                    if commit.records[index]:
                        merged.setdefault(commit.partition, {}).update(commit.records[index])
                for partition, records in merged.items():
                    changelog = self.all[index].changelog
                    delivered = await changelog.send(partition, list(records.items()))
                    pending.append(((index, partition), delivered))
                    sent += len(records)
            for key, delivered in pending:
                offsets[key] = await delivered
        for commit in commits:
            for table, changes in zip(self.all, commit.changes, strict=True):
                table.store_changes(changes, commit.partition)
        for (index, partition), offset in offsets.items():
            self.all[index].store.stored_upto(partition, offset)
        return sent

    def abandon(self, commit: Commit) -> None:
        """Give up a commit: its changes are neither stored nor read."""
        for table, changes in zip(self.all, commit.changes, strict=True):
            table.forget(changes)
