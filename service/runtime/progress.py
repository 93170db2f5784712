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

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from service.runtime.framing import FROM_INGEST, Origin
from service.runtime.tables import KEY_CODEC, Changelog, ChangelogRecord, OverlayTable


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

    def after(self, offset: int, origins: Sequence[Origin] = ()) -> Marker:
        """The marker once the message at `offset`, with the parts from `origins`, is done
        (none: skipped as already applied)."""
        moved = [origin for origin in origins if origin.partition != FROM_INGEST]
        if not moved:
            return Marker(offset, self.origins)
        latest = dict(self.origins)
        for origin in moved:
            key = str(origin.partition)
            last = latest.get(key)
            if last is None or [origin.offset, origin.chunk] > last:
                latest[key] = [origin.offset, origin.chunk]
        return Marker(offset, latest)


NO_MARKER = Marker(-1, {})


class ProgressMarkers:
    """One stage's markers, one per partition of its input topic, kept in `table`.

    Two views: what is stored (`stored`), and what will be once the messages applied so far
    are completed (`read`, kept in memory): a stage skips by the second and tells the core what
    is known stored by the first. A rebalance forgets the second (`forget`): Faust waits for
    every message it handed out to be acknowledged before it gives a partition away, so by then
    both agree.
    """

    def __init__(self, table: OverlayTable[Any], topic: str) -> None:
        self._table = table
        self.topic = topic
        self._applied: dict[int, Marker] = {}

    def stored(self, partition: int) -> Marker:
        value = self._table.get(progress_key(self.topic, partition))
        if value is None:
            return NO_MARKER
        return Marker(int(value[0]), value[1])

    def read(self, partition: int) -> Marker:
        marker = self._applied.get(partition)
        return marker if marker is not None else self.stored(partition)

    def next_offset(self, partition: int) -> int:
        return self.read(partition).applied_upto + 1

    def applied(self, partition: int, marker: Marker) -> None:
        self._applied[partition] = marker

    def forget(self) -> None:
        self._applied.clear()

    def record(self, partition: int, marker: Marker) -> ChangelogRecord:
        """Store the marker; returns its changelog record, to be sent after everything it
        covers is stored."""
        key = progress_key(self.topic, partition)
        value = [marker.applied_upto, marker.origins]
        self._table.store.put(key, value, partition)
        return KEY_CODEC.dumps(key), self._table.codec.dumps(value)

    @property
    def changelog(self) -> Changelog:
        return self._table.changelog
