"""The runtime's tables on Faust tables: Faust keeps the store (memory or RocksDB), recovers it
from the changelog topic when a partition is assigned, and routes web requests to the owner;
the runtime writes both the store and the changelog itself (`runtime.tables`).

Changelog records are the bytes the runtime's codecs make; Faust's recovery and standbys read
them with the same codecs, registered here under names Faust can look up.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from faust.serializers import codecs
from faust.stores.memory import Store as MemoryStore
from faust.types import TP

from service.runtime.tables import (
    ACTOR_CODEC,
    KEY_CODEC,
    QUOTA_CODEC,
    RELATION_CODEC,
    TARGET_CODEC,
    Codec,
)
from service.worker.workarounds import PartitionedWrites, keep_memory_offsets, use_codecs

CODEC_NAMES = {
    "actors": "reciprocity_actor_state",
    "targets": "reciprocity_target_state",
    "relations": "reciprocity_relation",
    "quotas": "reciprocity_quota_state",
}
KEY_CODEC_NAME = "reciprocity_key"
_CODECS = {
    "actors": ACTOR_CODEC,
    "targets": TARGET_CODEC,
    "relations": RELATION_CODEC,
    "quotas": QUOTA_CODEC,
}


class _FaustCodec(codecs.Codec):
    def __init__(self, codec: Codec) -> None:
        super().__init__()
        self._codec = codec

    def _dumps(self, obj: Any) -> bytes:
        return self._codec.dumps(obj)

    def _loads(self, s: bytes) -> Any:
        return self._codec.loads(s)


def register_codecs() -> None:
    codecs.register(KEY_CODEC_NAME, _FaustCodec(KEY_CODEC))
    for name, codec in _CODECS.items():
        codecs.register(CODEC_NAMES[name], _FaustCodec(codec))


def faust_table(app: Any, name: str, partitions: int) -> Any:
    table = use_codecs(app.Table(name, partitions=partitions), KEY_CODEC_NAME, CODEC_NAMES[name])
    return keep_memory_offsets(table)


class FaustStore:
    """A Faust table's store as the runtime's `Store`."""

    def __init__(self, table: Any) -> None:
        self._table = table
        self._writes: PartitionedWrites | None = None
        self._dict: MutableMapping[str, Any] | None = None

    def _store(self) -> Any:
        # The store exists once the table does its first read or write (Faust makes it then).
        store = self._table.data
        if self._writes is None:
            self._writes = PartitionedWrites(store)
            if isinstance(store, MemoryStore):
                self._dict = store.data
        return store

    def get(self, key: str, default: Any = None) -> Any:
        memory = self._dict
        if memory is not None:
            return memory.get(key, default)
        return self._store().get(key, default)

    def put(self, key: str, value: Any, partition: int) -> None:
        if self._writes is None:
            self._store()
        assert self._writes is not None
        self._writes.put(key, value, partition)

    def delete(self, key: str, partition: int) -> None:
        if self._writes is None:
            self._store()
        assert self._writes is not None
        self._writes.delete(key, partition)

    def __len__(self) -> int:
        return len(self._table.data)

    def stored_upto(self, partition: int, offset: int) -> None:
        # What Faust's own send callback does: recovery of a persistent store starts there.
        tp = TP(self._table.changelog_topic.get_topic_name(), partition)
        self._table.data.set_persisted_offset(tp, offset)
