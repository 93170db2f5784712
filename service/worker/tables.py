"""State in Faust tables, written once per key per stage message.

`CoalescedTable` sits between the pipeline and a Faust table: reads see pending writes,
writes are remembered, and `flush()` hands each changed key to the Faust table once. A key
touched by 50 events of one batch costs one changelog record instead of 50. `flush()` must
run inside the agent's iteration over the message that caused the writes: Faust sends the
changelog record to that message's partition, which is the key's partition because every
stage topic and table has the same partition count and the same key hashing.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from typing import Any, Generic, TypeVar

import orjson
from faust.serializers import codecs

from service.state import ActorState, Relation, TargetState

V = TypeVar("V")
_DELETED: Any = object()


class CoalescedTable(MutableMapping[str, V], Generic[V]):
    def __init__(self, table: MutableMapping[str, V]) -> None:
        self.table = table
        self._pending: dict[str, V] = {}

    def __getitem__(self, key: str) -> V:
        value = self._pending.get(key)
        if value is None:
            return self.table[key]
        if value is _DELETED:
            raise KeyError(key)
        return value

    def get(self, key: str, default: Any = None) -> Any:
        value = self._pending.get(key)
        if value is None:
            return self.table.get(key, default)
        return default if value is _DELETED else value

    def __setitem__(self, key: str, value: V) -> None:
        self._pending[key] = value

    def __delitem__(self, key: str) -> None:
        self._pending[key] = _DELETED

    def __iter__(self) -> Iterator[str]:
        raise TypeError("iterating a table in the hot path is a bug")

    def __len__(self) -> int:
        return len(self.table)

    def flush(self) -> int:
        """Write pending changes to the Faust table; returns how many keys were written."""
        table = self.table
        for key, value in self._pending.items():
            if value is _DELETED:
                table.pop(key, None)
            else:
                table[key] = value
        written = len(self._pending)
        self._pending.clear()
        return written


class StageTables:
    """The three tables as the pipeline's `Tables`, with coalesced writes."""

    def __init__(
        self,
        actors: MutableMapping[str, ActorState],
        targets: MutableMapping[str, TargetState],
        relations: MutableMapping[str, Relation],
    ) -> None:
        self.actors = CoalescedTable(actors)
        self.targets = CoalescedTable(targets)
        self.relations = CoalescedTable(relations)

    def flush(self) -> int:
        return self.actors.flush() + self.targets.flush() + self.relations.flush()


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
