"""Progress markers: what makes at-least-once delivery between the stages change no count.

Per input partition a stage keeps a marker `[last_offset_applied, {origin_partition:
[origin_offset, chunk]}]` in the same table as the state it writes, written after that state
and after the message's own outputs are acknowledged (`runtime.checkpoint`). One table means
one changelog partition, and Kafka keeps a partition's order: a stored marker proves that
everything before it is stored.

After a crash a stage then skips (a) its own input messages at or below the marker, whose
effects are all stored, and (b) messages whose origin it has already applied: a replayed
upstream message sends the same chunks again (`runtime.framing`). Only the message a crash
interrupted is applied again, and the event ids kept per account absorb the part of it that
was already stored.

The marker also says which input offset must come next; the worker reads back a range its
consumer skipped (`service.worker.workarounds`).
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

from service.runtime.framing import FROM_INGEST, Origin
from service.runtime.tables import KEY_CODEC, OverlayTable


def progress_key(topic: str, partition: int) -> str:
    """Key of a stage's marker. Account ids have no control characters or spaces, so it cannot
    name an account."""
    return f"\x00progress {topic} {partition}"


@dataclass(frozen=True)
class Marker:
    applied_upto: int  # the last input offset whose effects are all stored; -1: none
    origins: dict[str, list[int]]  # origin partition -> [origin offset, chunk] last applied

    def already_applied(self, offset: int, origin: Origin) -> bool:
        if offset <= self.applied_upto:
            return True
        if origin.partition == FROM_INGEST:
            return False
        last = self.origins.get(str(origin.partition))
        return last is not None and [origin.offset, origin.chunk] <= last

    def after(self, offset: int, origin: Origin | None) -> Marker:
        """The marker once the message at `offset` (with `origin`; None: skipped as already
        applied) is done."""
        if origin is None or origin.partition == FROM_INGEST:
            return Marker(offset, self.origins)
        return Marker(
            offset, {**self.origins, str(origin.partition): [origin.offset, origin.chunk]}
        )


NO_MARKER = Marker(-1, {})


class ProgressMarkers:
    """One stage's markers, one per partition of its input topic, kept in `table`."""

    def __init__(self, table: OverlayTable[Any], topic: str) -> None:
        self._table = table
        self.topic = topic
        self._sent: Awaitable[int] | None = None

    def read(self, partition: int) -> Marker:
        value = self._table.get(progress_key(self.topic, partition))
        if value is None:
            return NO_MARKER
        return Marker(int(value[0]), value[1])

    def next_offset(self, partition: int) -> int:
        return self.read(partition).applied_upto + 1

    async def write(self, partition: int, marker: Marker) -> None:
        """Store the marker and send it to the changelog, after everything sent before it.

        Its acknowledgement is not awaited here but before the next marker's send: a lost
        marker only means its message is applied again (and absorbed), while waiting would add
        a round trip to every message. A failed send still ends the stage, one message later.
        """
        previous, self._sent = self._sent, None
        if previous is not None:
            await previous
        key = progress_key(self.topic, partition)
        value = [marker.applied_upto, marker.origins]
        self._table.store[key] = value
        self._sent = await self._table.changelog.send(
            partition, [(KEY_CODEC.dumps(key), self._table.codec.dumps(value))]
        )

    async def flush(self) -> None:
        """Wait for the last marker's acknowledgement (before a stop)."""
        previous, self._sent = self._sent, None
        if previous is not None:
            await previous
