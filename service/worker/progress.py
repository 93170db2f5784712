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

The marker also says which offset must come next. Faust can drop input messages around a
rebalance (worker.missed); a stage that sees its input jump past that offset reads the
missing messages back itself.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable, MutableMapping
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

    def record_skipped(self) -> None:
        """Advance past a message whose origin was already applied, so that the next offset
        expected stays exact."""
        self._table[self._key] = [self._offset, self._marker[1]]


class ActorStageClock:
    """How far stage 1 has got, per partition, for stage 2 of the same partition to wait on.

    Stage 2 judges "does the target follow the actor?" from relations that stage 1 writes when
    the target acts. Replay applies events in event-time order; the worker's stage 1 for a
    partition can lag its stage 2 (a restarted worker replays its stage-1 backlog while other
    partitions' forwards keep arriving), and then a friend's request looks like a stranger's.
    So stage 2 waits until stage 1 of its partition has applied events up to the message's
    event time, or has applied all there is so far (`caught_up(partition)`: nothing newer can
    come from it yet), or `max_s` has passed.

    Caught up is asked of the input, not inferred from quiet: a stage 1 that has not fetched
    yet after a restart or a rebalance is quiet too. A rebalance forgets the event times
    (`forget()`): a partition that comes back may have moved on elsewhere meanwhile.
    """

    def __init__(
        self,
        max_s: float,
        clock: Callable[[], float],
        caught_up: Callable[[int], bool],
        poll_s: float = 0.1,
    ) -> None:
        self.max_s = max_s
        self._clock = clock
        self._caught_up = caught_up
        self._poll_s = poll_s
        self._event_ms: dict[int, int] = {}
        self._advanced = asyncio.Event()

    def advance(self, partition: int, newest_event_ms: int) -> None:
        if newest_event_ms > self._event_ms.get(partition, -1):
            self._event_ms[partition] = newest_event_ms
        self._advanced.set()

    def forget(self) -> None:
        self._event_ms.clear()

    def ready(self, partition: int, event_ms: int, waiting_since: float) -> bool:
        if self._event_ms.get(partition, -1) >= event_ms:
            return True
        return self._clock() - waiting_since >= self.max_s or self._caught_up(partition)

    async def wait(self, partition: int, event_ms: int, stop: Callable[[], bool]) -> bool:
        """Returns whether it had to wait."""
        if event_ms < 0 or self._event_ms.get(partition, -1) >= event_ms:
            return False
        since = self._clock()
        waited = False
        while not self.ready(partition, event_ms, since) and not stop():
            waited = True
            self._advanced.clear()
            # Caught-up changes without an advance (the input's end offset is learnt from
            # fetches), so poll as well.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._advanced.wait(), timeout=self._poll_s)
        return waited
