"""The delivery protocol of a stage message: `Checkpoint.run`, finished by `CommitQueue`."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from service.core.models import Alert, ShadowAlert
from service.runtime.framing import (
    MAX_MESSAGE_BYTES,
    Chunk,
    Origin,
    StageOutbox,
    decode_message,
    encode_message,
    pack,
)
from service.runtime.metrics import Metrics
from service.runtime.progress import Marker, ProgressMarkers
from service.runtime.sinks import Sink, alert_message
from service.runtime.tables import ChangelogRecord, Commit, StateTables

if TYPE_CHECKING:
    from service.runtime.quota_stage import QuotaHop


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
    origins: list[Origin]  # of the parts applied (a part already applied is left out)
    items: list[Any]
    applied_upto: int  # the stage's stored marker on this partition: effects known stored


@dataclass
class Outputs:
    """What applying a stage message produced, to be acknowledged before its state is stored."""

    alerts: list[Alert] = field(default_factory=list)
    shadow_alerts: list[ShadowAlert] = field(default_factory=list)  # to the shadow topic only
    forwards: StageOutbox | None = None  # to the next stage
    # Enforced alerts of rules with a quota, to the quota stage (`runtime.quota_stage`).
    to_quota_stage: StageOutbox | None = None
    dead_letters: list[tuple[bytes | None, bytes]] = field(default_factory=list)  # key, value


class StageLogic(Protocol):
    name: str

    async def ready(self, message: StageInput) -> bool:
        """Wait, if this stage must, before applying the message. False: leave it unapplied
        (the wait was interrupted by a rebalance or a stop)."""

    def apply(self, message: StageInput) -> Outputs:
        """Run the core over the items. Synchronous: the stages share the tables' pending
        writes, so nothing may run between the first write and the commit."""


@dataclass(frozen=True)
class OutputSinks:
    alerts: Sink
    shadow_alerts: Sink
    dead_letters: Sink
    next_stage: Forwards | None = None
    quota_stage: Forwards | None = None  # None: no rule had a quota at the start


class Checkpoint:
    """Applies one stage message so that re-delivery and crashes change no count and lose no
    output:

    1. **Skip what was applied.** The input offset is at or below the stage's progress marker
       for this partition, or the marker holds a part's origin chunk (a replayed upstream
       message sends the same chunks again): that part is left out, and a message with no
       part left is skipped. The marker moves past a skipped message.
    2. **Apply.** The stage runs the core over the items. State changes go to the tables'
       overlay (reads see them, the store does not yet); alerts and dead letters are handed to
       their sinks, next-stage chunks to `Forwards`, which sends them at the start of the
       next round of steps 3-5, packed with those of the other messages of that round. The
       enforced alerts of a rule with a quota go the same way to the quota stage, keyed by
       rule, instead of to the alerts topic (`runtime.quota_stage`).
    3. **Outputs acknowledged.** Alerts (shadow alerts to their own topic), dead letters and
       next-stage messages are awaited. A crash before this ends re-applies the message: the
       same outputs again, with the same alert ids and origin, absorbed downstream. Storing
       the state first would lose them instead: the events would be marked as seen, and a
       stage that finds only duplicates sends nothing.
    4. **State and changelog.** The overlay's changes are sent to the changelogs (relations
       first, then accounts: see `StateTables`), awaited, and stored.
    5. **Progress marker.** `[offset, origins]` is stored and sent to the same changelog, after
       the state: a stored marker proves everything before it is stored.

    `run` does steps 1 and 2 and returns at once; steps 3-5 run in the background on the
    `CommitQueue` that all stages share, so that the stage applies its next message meanwhile.
    Messages applied while a round of steps 3-5 runs are completed together in the next one:
    one wait for all their outputs, one producer batch per changelog partition, one marker
    per partition. The awaitable `run` returns resolves when the message's step 5 is done;
    only then may the input offset be committed.

    A failure in steps 3-5 is fatal: the store's in-memory objects may already hold the
    message's changes (the core updates account states in place), so the stage cannot go on;
    the process ends, and its restart rebuilds state from what was stored and re-applies.
    """

    def __init__(
        self,
        tables: StateTables,
        markers: ProgressMarkers,
        sinks: OutputSinks,
        queue: CommitQueue,
        metrics: Metrics,
        quota_hop: QuotaHop | None = None,
    ) -> None:
        self.tables = tables
        self.markers = markers
        self.sinks = sinks
        self.queue = queue
        self.metrics = metrics
        # None: no rule had a quota at the start, alerts go straight to their sinks.
        self.quota_hop = quota_hop

    async def run(self, record: Record, stage: StageLogic) -> Awaitable[Outputs | None] | None:
        """None: the stage left the message unapplied (`StageLogic.ready`); nothing of it is
        stored and its offset must not be committed."""
        assert record.value is not None  # stage messages are never tombstones
        partition = record.partition
        marker = self.markers.read(partition)
        # 1. Skip what was applied.
        if record.offset <= marker.applied_upto:
            self.metrics.replayed_messages.labels(stage.name).inc()
            return _done(None)
        parts = [
            (origin, items)
            for origin, items in decode_message(record.value)
            if not marker.already_applied(record.offset, origin)
        ]
        if not parts:
            self.metrics.replayed_messages.labels(stage.name).inc()
            skipped = marker.after(record.offset)
            self.markers.applied(partition, skipped)
            return self.queue.submit(_Applied(self.markers, partition, skipped, None, [], None))
        origins = [origin for origin, _ in parts]
        message = StageInput(
            record.topic,
            partition,
            record.offset,
            origins,
            parts[0][1] if len(parts) == 1 else [item for _, items in parts for item in items],
            self.markers.stored(partition).applied_upto,
        )
        if not await stage.ready(message):
            return None
        # 2. Apply (and hand the outputs over, in order; a rule with a quota's alerts to the
        # quota stage).
        outputs = stage.apply(message)
        if self.quota_hop is not None:
            self.quota_hop.divert(outputs)
        commit = self.tables.commit(partition)
        sent = await self._hand_over(outputs, record)
        applied = marker.after(record.offset, origins)
        self.markers.applied(partition, applied)
        # 3-5, in the background.
        return self.queue.submit(_Applied(self.markers, partition, applied, commit, sent, outputs))

    async def _hand_over(self, outputs: Outputs, record: Record) -> list[Awaitable[Any]]:
        sinks = self.sinks
        sent: list[Awaitable[Any]] = []
        for alert in outputs.alerts:
            self.metrics.alerts.labels(alert.rule, alert.severity.value, "enforce").inc()
            key, value = alert_message(alert)
            sent.append(await sinks.alerts.send(value, key))
        for shadow in outputs.shadow_alerts:
            self.metrics.alerts.labels(shadow.rule, shadow.severity.value, "shadow").inc()
            key, value = alert_message(shadow)
            sent.append(await sinks.shadow_alerts.send(value, key))
        for letter_key, letter in outputs.dead_letters:
            sent.append(await sinks.dead_letters.send(letter, letter_key))
        if outputs.forwards is not None and len(outputs.forwards):
            assert sinks.next_stage is not None
            sent.append(
                sinks.next_stage.add(outputs.forwards.chunks(record.partition, record.offset))
            )
        if outputs.to_quota_stage is not None:
            assert sinks.quota_stage is not None and self.quota_hop is not None
            origin = self.quota_hop.origin_base + record.partition
            sent.append(sinks.quota_stage.add(outputs.to_quota_stage.chunks(origin, record.offset)))
        return sent


class Forwards:
    """Next-stage chunks waiting for the next round of steps 3-5, which sends them packed:
    one message per destination partition (or more, cut by size) for all the messages of the
    round, where one per upstream message and partition made a fan-out of N partitions into
    N² small messages, each paying the consumer's per-message cost."""

    def __init__(self, sink: Sink, max_message_bytes: int = MAX_MESSAGE_BYTES) -> None:
        self._sink = sink
        self._max_bytes = max_message_bytes
        self._waiting: list[tuple[list[Chunk], asyncio.Future[None]]] = []

    def add(self, chunks: Iterable[Chunk]) -> asyncio.Future[None]:
        """Resolves once every message holding one of the chunks is acknowledged."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((list(chunks), done))
        return done

    async def flush(self) -> None:
        waiting, self._waiting = self._waiting, []
        if not waiting:
            return
        by_partition: dict[int, list[Chunk]] = {}
        holder: dict[int, int] = {}  # id(chunk) -> index in waiting
        for index, (chunks, _) in enumerate(waiting):
            for chunk in chunks:
                by_partition.setdefault(chunk.partition, []).append(chunk)
                holder[id(chunk)] = index
        needs: list[list[asyncio.Future[Any]]] = [[] for _ in waiting]
        try:
            for partition, chunks in by_partition.items():
                for message in pack(chunks, self._max_bytes):
                    sent = asyncio.ensure_future(
                        await self._sink.send(encode_message(message), None, partition)
                    )
                    for index in {holder[id(chunk)] for chunk in message}:
                        needs[index].append(sent)
        except BaseException as exc:
            for _, done in waiting:
                done.set_exception(CompletionFailed(exc))
            raise
        for (_, done), awaited in zip(waiting, needs, strict=True):
            _resolve_after(done, awaited)


def _resolve_after(done: asyncio.Future[None], awaited: list[asyncio.Future[Any]]) -> None:
    if not awaited:
        done.set_result(None)
        return

    def finished(gathered: asyncio.Future[Any]) -> None:
        if done.done():
            return
        if gathered.cancelled():
            done.cancel()
        elif gathered.exception() is not None:
            done.set_exception(gathered.exception())  # type: ignore[arg-type]
        else:
            done.set_result(None)

    asyncio.gather(*awaited).add_done_callback(finished)


def _done(value: Outputs | None) -> asyncio.Future[Outputs | None]:
    future: asyncio.Future[Outputs | None] = asyncio.get_running_loop().create_future()
    future.set_result(value)
    return future


@dataclass
class _Applied:
    """A message through steps 1-2, waiting for 3-5."""

    markers: ProgressMarkers
    partition: int
    marker: Marker
    commit: Commit | None  # None: skipped, only its marker moves
    sent: list[Awaitable[Any]]
    outputs: Outputs | None
    done: asyncio.Future[Outputs | None] = field(init=False)


class CompletionFailed(RuntimeError):
    """Steps 3-5 of a round failed; the cause says why."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(f"completing applied messages failed: {cause!r}")
        self.__cause__ = cause


class CommitQueue:
    """Steps 3-5 of every stage's applied messages, in the order they were applied, in rounds:
    each round takes everything applied so far."""

    def __init__(
        self,
        tables: StateTables,
        metrics: Metrics,
        on_failure: Callable[[BaseException], None] = lambda exc: None,
    ) -> None:
        self._tables = tables
        self._metrics = metrics
        self.on_failure = on_failure
        self._waiting: list[_Applied] = []
        self._running: asyncio.Task[None] | None = None
        self._markers_sent: list[Awaitable[int]] = []
        self.failure: BaseException | None = None
        self.forwards: list[Forwards] = []  # flushed at the start of every round

    def submit(self, applied: _Applied) -> asyncio.Future[Outputs | None]:
        applied.done = asyncio.get_running_loop().create_future()
        if self.failure is not None:
            applied.done.set_exception(CompletionFailed(self.failure))
            return applied.done
        self._waiting.append(applied)
        if self._running is None or self._running.done():
            self._running = asyncio.ensure_future(self._rounds())
        return applied.done

    async def _rounds(self) -> None:
        while self._waiting:
            group, self._waiting = self._waiting, []
            try:
                await self._complete(group)
            except BaseException as exc:
                self.failure = exc
                for applied in [*group, *self._waiting]:
                    if not applied.done.done():
                        # One exception object each: re-raising a shared one from many places
                        # grows its traceback with every raise.
                        applied.done.set_exception(CompletionFailed(exc))
                self._waiting = []
                self.on_failure(exc)
                return
            for applied in group:
                applied.done.set_result(applied.outputs)

    async def _complete(self, group: list[_Applied]) -> None:
        # 3. Outputs acknowledged.
        for forwards in self.forwards:
            await forwards.flush()
        await asyncio.gather(*(sent for applied in group for sent in applied.sent))
        # 4. State and changelog.
        commits = [applied.commit for applied in group if applied.commit is not None]
        if commits:
            self._metrics.state_writes.inc(await self._tables.send(commits))
        # 5. Progress markers: the last of each stage and partition. The previous round's are
        # awaited first (a failed send is fatal), not this round's: a lost marker only means
        # its messages are applied again, and waiting would add a round trip to every round.
        previous, self._markers_sent = self._markers_sent, []
        for delivered in previous:
            await delivered
        latest: dict[tuple[int, int], tuple[ProgressMarkers, int, Marker]] = {}
        for applied in group:
            latest[(id(applied.markers), applied.partition)] = (
                applied.markers,
                applied.partition,
                applied.marker,
            )
        records: dict[tuple[int, int], tuple[Any, list[ChangelogRecord]]] = {}
        for markers, partition, marker in latest.values():
            changelog = markers.changelog
            entry = records.setdefault((id(changelog), partition), (changelog, []))
            entry[1].append(markers.record(partition, marker))
        for (_, partition), (changelog, marker_records) in records.items():
            self._markers_sent.append(await changelog.send(partition, marker_records))

    async def flush(self) -> None:
        """Wait until everything submitted is completed (before a stop)."""
        while self._running is not None and not self._running.done():
            await asyncio.shield(self._running)
        if self.failure is not None:
            raise self.failure
        previous, self._markers_sent = self._markers_sent, []
        for delivered in previous:
            await delivered
