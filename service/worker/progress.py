"""What makes at-least-once delivery between the stages change no count.

Every stage message starts with its origin: `[origin_partition, origin_offset, chunk]`, the
stage message (and chunk of its output) that produced it; -1 for messages from ingest. Per input
partition a stage keeps a progress marker `[last_offset_applied, {origin_partition:
[origin_offset, chunk]}]` in the same table as the state it writes, written after that state and
after the message's own output is acknowledged. One table means one changelog partition, and
Kafka keeps a partition's order: a stored marker proves everything before it is stored.

After a crash a stage then skips (a) its own input messages at or below the marker, whose
effects are all stored, and (b) messages whose origin it has already applied: a replayed
upstream message sends the same chunks again. Only the message a crash interrupted is re-applied,
and the event ids kept per account absorb the part of it that was already stored.
"""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping
from typing import Any

import orjson

from service.worker.tables import progress_key
from service.worker.wire import MAX_BATCH_BYTES

Header = list[int]  # [origin_partition, origin_offset, chunk]


class Batches:
    """Items grouped by destination partition, cut into messages below MAX_BATCH_BYTES, each
    opening with its origin header."""

    def __init__(self) -> None:
        self._items: dict[int, list[bytes]] = {}

    def add(self, partition: int, item: Any) -> None:
        self._items.setdefault(partition, []).append(orjson.dumps(item))

    def messages(self, origin_partition: int, origin_offset: int) -> Iterable[tuple[int, bytes]]:
        for partition, items in self._items.items():
            chunk = 0
            parts: list[bytes] = []
            size = 0
            for item in items:
                if parts and size + len(item) > MAX_BATCH_BYTES:
                    yield partition, _message([origin_partition, origin_offset, chunk], parts)
                    chunk, parts, size = chunk + 1, [], 0
                parts.append(item)
                size += len(item) + 1
            if parts:
                yield partition, _message([origin_partition, origin_offset, chunk], parts)
        self._items.clear()


def _message(header: Header, items: list[bytes]) -> bytes:
    return b"[" + b",".join([orjson.dumps(header), *items]) + b"]"


def read_message(value: bytes) -> tuple[Header, list[Any]]:
    data = orjson.loads(value)
    return data[0], data[1:]


class StageProgress:
    def __init__(
        self, table: MutableMapping[str, Any], topic: str, partition: int, offset: int
    ) -> None:
        self._table = table
        self._key = progress_key(topic, partition)
        self._offset = offset
        marker = table.get(self._key)
        self._marker: list[Any] = marker if marker is not None else [-1, {}]

    @property
    def applied_upto(self) -> int:
        """The last offset of this input partition whose effects are all stored."""
        return int(self._marker[0])

    def already_applied(self, header: Header) -> bool:
        if self._offset <= self._marker[0]:
            return True
        origin_partition, origin_offset, chunk = header
        if origin_partition < 0:
            return False
        last = self._marker[1].get(str(origin_partition))
        return last is not None and [origin_offset, chunk] <= last

    def record(self, header: Header) -> None:
        origins = dict(self._marker[1])
        if header[0] >= 0:
            origins[str(header[0])] = [header[1], header[2]]
        self._table[self._key] = [self._offset, origins]
