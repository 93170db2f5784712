"""The runtime's tables on Faust tables: Faust keeps the store (memory or RocksDB), recovers it
from the changelog topic when a partition is assigned, and routes web requests to the owner;
the runtime writes both the store and the changelog itself (`runtime.tables`).

Changelog records are the bytes the runtime's codecs make; Faust's recovery and standbys read
them with the same codecs, registered here under names Faust can look up.
"""

from __future__ import annotations

from typing import Any

from faust.serializers import codecs
from faust.types import TP

from service.runtime.tables import ACTOR_CODEC, KEY_CODEC, RELATION_CODEC, TARGET_CODEC, Codec
from service.worker.workarounds import use_codecs

CODEC_NAMES = {
    "actors": "reciprocity_actor_state",
    "targets": "reciprocity_target_state",
    "relations": "reciprocity_relation",
}
KEY_CODEC_NAME = "reciprocity_key"
_CODECS = {"actors": ACTOR_CODEC, "targets": TARGET_CODEC, "relations": RELATION_CODEC}


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
    return use_codecs(app.Table(name, partitions=partitions), KEY_CODEC_NAME, CODEC_NAMES[name])


class FaustStore:
    """A Faust table's store as the runtime's `Store`."""

    def __init__(self, table: Any) -> None:
        self._table = table

    def get(self, key: str, default: Any = None) -> Any:
        return self._table.data.get(key, default)

    def __setitem__(self, key: str, value: Any) -> None:
        self._table.data[key] = value

    def pop(self, key: str, default: Any = None) -> Any:
        return self._table.data.pop(key, default)

    def __len__(self) -> int:
        return len(self._table.data)

    def stored_upto(self, partition: int, offset: int) -> None:
        # What Faust's own send callback does: recovery of a persistent store starts there.
        tp = TP(self._table.changelog_topic.get_topic_name(), partition)
        self._table.data.set_persisted_offset(tp, offset)
