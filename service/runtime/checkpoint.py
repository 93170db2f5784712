"""The delivery protocol of a stage message, in one method: `Checkpoint.run`."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, Protocol

from service.core.models import Alert
from service.runtime.framing import Origin, StageOutbox, decode_message
from service.runtime.metrics import Metrics
from service.runtime.progress import ProgressMarkers
from service.runtime.sinks import Delivery, Sink, alert_message
from service.runtime.tables import StateTables


class Record(Protocol):
    """An input message as a stage reads it: Faust's messages and aiokafka's records both."""

    @property
    def topic(self) -> str: ...

    @property
    def partition(self) -> int: ...

    @property
    def offset(self) -> int: ...

    @property
    def key(self) -> bytes | None: ...

    @property
    def value(self) -> bytes | None: ...


@dataclass(frozen=True)
class StageInput:
    """One stage message, decoded, with what its stage had stored before it."""

    topic: str
    partition: int
    offset: int
    origin: Origin
    items: list[Any]
    applied_upto: int  # the stage's marker on this partition before this message


@dataclass
class Outputs:
    """What applying a stage message produced, to be acknowledged before its state is stored."""

    alerts: list[Alert] = field(default_factory=list)
    forwards: StageOutbox | None = None  # to the next stage
    dead_letters: list[tuple[bytes | None, bytes]] = field(default_factory=list)  # key, value


class StageLogic(Protocol):
    name: str

    async def ready(self, message: StageInput) -> None:
        """Wait, if this stage must, before applying the message."""

    def apply(self, message: StageInput) -> Outputs:
        """Run the core over the items. Synchronous: the stages share the tables' pending
        writes, so nothing may run between the first write and the commit."""


@dataclass(frozen=True)
class OutputSinks:
    alerts: Sink
    dead_letters: Sink
    next_stage: Sink | None = None


class Checkpoint:
    """Applies one stage message so that re-delivery and crashes change no count and lose no
    output:

    1. **Skip what was applied.** The input offset is at or below the stage's progress marker
       for this partition, or the marker holds the message's origin chunk (a replayed upstream
       message sends the same chunks again). The marker moves past a skipped message.
    2. **Apply.** The stage runs the core over the items. State changes go to the tables'
       overlay (reads see them, the store does not yet); outputs collect in `Outputs`.
    3. **Outputs acknowledged.** Alerts, dead letters and next-stage messages are sent and
       awaited. A crash before this ends re-applies the message: the same outputs again, with
       the same alert ids and origin, absorbed downstream. Storing the state first would lose
       them instead: the events would be marked as seen, and a stage that finds only
       duplicates sends nothing.
    4. **State and changelog.** The overlay's layer goes to the store, its changelog records
       are sent (in commit order across the stages that share the tables) and awaited.
    5. **Progress marker.** `[offset, origins]` is stored and sent to the same changelog, after
       the state: a stored marker proves everything before it is stored.

    A failure in steps 3-5 raises: the store's in-memory objects may already hold the
    message's changes (the core updates account states in place), so the stage cannot go on;
    the process ends and its restart rebuilds state from what was stored and re-applies.
    """

    def __init__(
        self,
        tables: StateTables,
        markers: ProgressMarkers,
        sinks: OutputSinks,
        metrics: Metrics,
    ) -> None:
        self.tables = tables
        self.markers = markers
        self.sinks = sinks
        self.metrics = metrics

    async def run(self, record: Record, stage: StageLogic) -> Outputs | None:
        """The message's outputs, or None if it was already applied."""
        assert record.value is not None  # stage messages are never tombstones
        origin, items = decode_message(record.value)
        partition = record.partition
        marker = self.markers.read(partition)
        # 1. Skip what was applied.
        if marker.already_applied(record.offset, origin):
            self.metrics.replayed_messages.labels(stage.name).inc()
            if record.offset > marker.applied_upto:
                await self.markers.write(partition, marker.after(record.offset, None))
            return None
        message = StageInput(
            record.topic, partition, record.offset, origin, items, marker.applied_upto
        )
        await stage.ready(message)
        # 2. Apply.
        outputs = stage.apply(message)
        commit = self.tables.commit()
        # 3. Outputs acknowledged.
        try:
            await asyncio.gather(*await self._send(outputs, record))
        except BaseException:
            self.tables.abandon(commit)
            raise
        # 4. State and changelog.
        written = await self.tables.send(commit, partition)
        self.metrics.state_writes.labels(stage.name).inc(written)
        # 5. Progress marker.
        await self.markers.write(partition, marker.after(record.offset, origin))
        return outputs

    async def _send(self, outputs: Outputs, record: Record) -> list[Awaitable[Delivery]]:
        sinks = self.sinks
        sent = []
        for alert in outputs.alerts:
            self.metrics.alerts.labels(alert.rule, alert.severity.value).inc()
            key, value = alert_message(alert)
            sent.append(await sinks.alerts.send(value, key))
        for letter_key, letter in outputs.dead_letters:
            sent.append(await sinks.dead_letters.send(letter, letter_key))
        if outputs.forwards is not None:
            assert sinks.next_stage is not None
            for partition, value in outputs.forwards.messages(record.partition, record.offset):
                sent.append(await sinks.next_stage.send(value, None, partition))
        return sent
